// callrec console: small progressive enhancements. Every page works without this file.
"use strict";

// Leave empty search fields out of the URL, so shared links hold only what was asked.
function cleanSearchForm(form) {
  form.addEventListener("submit", () => {
    for (const input of form.querySelectorAll("input[name]")) {
      if (input.value.trim() === "") {
        input.disabled = true;
      }
    }
    // Re-enable after the navigation starts, for the back/forward cache.
    setTimeout(() => {
      for (const input of form.querySelectorAll("input[name]")) {
        input.disabled = false;
      }
    }, 0);
  });
}

// Skip buttons under each player: keyboard and touch friendly seeking.
function addSkipButtons(player) {
  const tools = document.createElement("div");
  tools.className = "player-tools";
  for (const [label, seconds] of [["Back 10 s", -10], ["Forward 10 s", 10]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = label;
    button.addEventListener("click", () => {
      const end = Number.isFinite(player.duration) ? player.duration : Infinity;
      player.currentTime = Math.min(Math.max(0, player.currentTime + seconds), end);
    });
    tools.append(button);
  }
  player.after(tools);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.search")) {
    cleanSearchForm(form);
  }
  for (const player of document.querySelectorAll("audio.player, video.player")) {
    addSkipButtons(player);
  }
});

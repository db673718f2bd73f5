"""The web console: server-rendered pages to search, inspect and play recordings.

Nothing is imported here on purpose: ``callrec.api.deps`` reads session cookies through
``callrec.web.sessions``, and the console's pages import the API's building blocks, so the
package itself stays empty to keep that from becoming an import cycle.
"""

"""The staff console: server-rendered pages for 消保分局 triage, unit handlers and bureau leaders.

`web.console.routes.setup(app)` adds the routes; pages are Jinja2 templates (autoescape on everywhere)
translated with gettext (Simplified Chinese message ids, English from the catalog).
"""

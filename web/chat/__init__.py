"""The web chat at /chat: the same conversation as the Telegram bot, for citizens without Telegram.

routes.py   the pages and form posts (plain HTML forms; chat.js only enhances them)
identity.py the citizen's chat cookie, the CSRF token bound to it, and the Origin/Referer check
service.py  one message in: inbox first, then the conversation engine, then the stored transcript
codes.py    the access code of a case submitted here, for the status page (stored hashed)
limits.py   wrong status look-ups counted per IP and per cookie
"""

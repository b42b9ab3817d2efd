"""aiohttp application: health, staff console, web chat, JSON API."""

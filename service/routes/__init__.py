"""The app's routes, one module-level router per concern; ``create_app`` includes them all."""

from . import duplicates, health, moderation, pages, search, threads, webhooks

ROUTERS = (pages.router, health.router, search.router, duplicates.router, threads.router,
           webhooks.router, moderation.router, moderation.page_router)

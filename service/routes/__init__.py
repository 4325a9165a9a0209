"""The app's routes, one module-level router per concern; ``create_app`` includes them all."""

from . import duplicates, health, pages, search, threads

ROUTERS = (pages.router, health.router, search.router, duplicates.router, threads.router)

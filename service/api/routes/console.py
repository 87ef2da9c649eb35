"""The operator console: one static page (plain HTML, CSS and JavaScript, nothing fetched from elsewhere)
that works on the API's own endpoints."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

router = APIRouter(tags=["console"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page is small and changes with each release: revalidate instead of serving a stale copy.
NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
def console_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file '{name}'")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=NO_CACHE)

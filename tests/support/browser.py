"""Headless Chromium as the tests start it on this machine (as root, no network but the
package registries): without the background-networking flags Chromium keeps trying to reach
Google's hosts; every test gives its own fresh ``--user-data-dir``."""

from __future__ import annotations

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

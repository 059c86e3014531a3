"""Camera-side package: frame sources, the client SDK and the streaming / scoring commands. Never imports torch."""

from __future__ import annotations

__all__: list[str] = []

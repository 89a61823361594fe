"""OpenAPI helpers shared by the API and the accrual simulator: request bodies that a
handler decodes by itself, documented from msgspec structs, and Swagger UI served by the
app itself (no CDN: the UI works on a machine without internet access)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Router
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, RequestBody
from litestar.static_files import create_static_files_router

SCHEMA_PATH: Final = "/schema"

# --- request bodies: from the wire structs, inlined (a host mounting the router gets
# complete operations without having to register our component schemas) -------------


def struct_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """``struct``'s JSON Schema (msgspec's, 2020-12 = OpenAPI 3.1) with nested structs
    inlined: a host mounting a router gets complete operations without having to
    register our component schemas."""
    prefix = "#/components/schemas/"
    (_,), components = msgspec.json.schema_components([struct], ref_template=prefix + "{name}")

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                return inline(components[ref.removeprefix(prefix)])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema: dict[str, Any] = inline(components[struct.__name__])
    return schema


def documented_body(
    media_type: str, schema: dict[str, Any], examples: Mapping[str, Any], description: str
) -> type[Operation]:
    """An ``Operation`` that documents a request body the handler decodes by itself."""
    content = {
        media_type: OpenAPIMediaType(
            schema=schema,  # type: ignore[arg-type]  # a JSON Schema dict renders as is
            examples={name: Example(value=value) for name, value in examples.items()},
        )
    }

    @dataclass
    class DocumentedBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(content=content, description=description, required=True)

    return DocumentedBody


# --- the UI, served from the app itself -----------------------------------------------


def _swagger_assets() -> Path | None:
    """Swagger UI's static files from the ``swagger-ui-py`` distribution, found without
    importing it (its package imports web-framework handlers we do not need)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


class LocalSwaggerUI(SwaggerRenderPlugin):
    """Swagger UI with its JS and CSS served by the app under ``<schema>/static/``."""

    def __init__(self, assets: Path, schema_path: str = "/schema") -> None:
        base = f"{schema_path.rstrip('/')}/static"
        super().__init__(
            js_url=f"{base}/swagger-ui-bundle.js",
            css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
            path="/swagger",
            favicon="",
        )
        self._assets = assets

    def receive_router(self, router: Router) -> None:
        router.register(
            create_static_files_router(
                path="/static", directories=[self._assets], include_in_schema=False
            )
        )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    plugins: list[OpenAPIRenderPlugin] = [JsonRenderPlugin(), YamlRenderPlugin()]
    assets = _swagger_assets()
    if assets is not None:
        plugins.insert(0, LocalSwaggerUI(assets))
    return plugins

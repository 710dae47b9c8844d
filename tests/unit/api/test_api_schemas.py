"""The marshmallow schemas of ``/api/v1`` and the OpenAPI document generated from them."""

from __future__ import annotations

import io

import pytest
from marshmallow import ValidationError

from lama_cleaner.inpaint_request import InpaintRequest
from lama_cleaner.server.api_docs import build_openapi, render_html
from lama_cleaner.server.api_schemas import (
    NodeSchema,
    TaskListQuerySchema,
    TaskSubmitFormSchema,
    dump_with_extras,
    iso_timestamp,
)


def test_iso_timestamps():
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert iso_timestamp(1_700_000_000.123456) == "2023-11-14T22:13:20.123Z"
    assert iso_timestamp(None) is None and iso_timestamp("2020-01-01T00:00:00.000Z") == "2020-01-01T00:00:00.000Z"


def test_submit_schema_parses_like_the_classic_route():
    loaded = TaskSubmitFormSchema().load(
        {
            "image": io.BytesIO(b"I"),
            "ldmSteps": "5.0",
            "zitsWireframe": "False",
            "hdStrategy": "crop",
            "upscale": "2",
            "someplugin_field": "kept",
        }
    )
    assert loaded["image"] == b"I" and loaded["ldmSteps"] == 5 and loaded["zitsWireframe"] is False
    assert loaded["hdStrategy"] == "Crop" and loaded["upscale"] == 2.0
    assert loaded["someplugin_field"] == "kept"  # plugin fields pass through


@pytest.mark.parametrize(
    ("payload", "field", "text"),
    [
        ({"image": io.BytesIO(b"I"), "zitsWireframe": "maybe"}, "zitsWireframe", "Invalid value for zitsWireframe"),
        ({"image": io.BytesIO(b"I"), "sdSampler": "euler_x"}, "sdSampler", "Invalid value for sdSampler"),
        ({"image": io.BytesIO(b"I"), "sdScale": "nan"}, "sdScale", "Invalid value for sdScale"),
        ({}, "image", "Missing data"),
        ({"image": "not a file"}, "image", "Expected a file upload"),
        ({"image": io.BytesIO(b"I"), "model": ""}, "model", "Length must be between 1 and 100"),
    ],
)
def test_submit_schema_rejects(payload, field, text):
    with pytest.raises(ValidationError) as info:
        TaskSubmitFormSchema().load(payload)
    assert text in " ".join(info.value.messages[field])


def test_list_query_defaults_and_bounds():
    assert TaskListQuerySchema().load({}) == {"limit": 50, "offset": 0}
    with pytest.raises(ValidationError):
        TaskListQuerySchema().load({"limit": "201"})
    with pytest.raises(ValidationError):
        TaskListQuerySchema().load({"status": "running"})


def test_dump_keeps_extras_and_normalises_documented_fields():
    out = dump_with_extras(NodeSchema(), {"id": "n", "state": "busy", "last_heartbeat": 0.5, "pid": 12})
    assert out == {"id": "n", "state": "busy", "last_heartbeat": "1970-01-01T00:00:00.500Z", "pid": 12}


def test_openapi_types_of_the_inpaint_fields():
    props = build_openapi()["components"]["schemas"]["TaskSubmit"]["properties"]
    assert set(InpaintRequest.form_names()) <= set(props)
    assert props["ldmSteps"]["type"] == "integer" and props["sdScale"]["type"] == "number"
    assert props["useCroper"]["type"] == "boolean" and props["prompt"]["type"] == "string"
    assert props["hdStrategy"]["enum"] == ["Original", "Resize", "Crop"]
    assert props["mask"]["format"] == "binary"


def test_docs_page_lists_every_operation():
    doc = build_openapi()
    page = render_html(doc)
    for path, item in doc["paths"].items():
        for method in item:
            if method in ("get", "post", "delete"):
                assert f"{method.upper()}</span> <code>{path}</code>" in page

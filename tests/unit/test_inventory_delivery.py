"""Delivery files (keyadmin keys import): any bytes either parse into checked keys or raise the
declared UsageError naming the problem; never another exception."""

from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from keyadmin.errors import UsageError
from keyadmin.flows.inventory import read_delivery

HEADER = b"serial,model,aaguid,batch,location\n"


def _read(tmp_path: Path, data: bytes) -> object:
    path = tmp_path / "delivery.csv"
    path.write_bytes(data)
    try:
        return read_delivery(path)
    except UsageError as e:
        said = ("nothing was imported", "is not UTF-8", "is empty")
        assert any(words in e.message for words in said), e.message
        return e


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=400))
def test_any_bytes_after_a_header_parse_or_raise_usage_error(tmp_path_factory, body) -> None:
    tmp = tmp_path_factory.mktemp("csv")
    out = _read(tmp, HEADER + body)
    if isinstance(out, list):
        for key in out:
            assert key.serial and key.serial.isprintable()
            assert key.model or key.aaguid
            if key.aaguid:
                uuid.UUID(key.aaguid)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_parses_or_raises_usage_error(tmp_path_factory, text) -> None:
    _read(tmp_path_factory.mktemp("csv"), text.encode("utf-8", "surrogatepass"))


def test_order_is_a_name_for_batch_and_a_bom_is_read(tmp_path) -> None:
    data = "\ufeffSerial,Model,Order\n 123 ,YubiKey 5 NFC,PO-7\n".encode()
    (key,) = _read(tmp_path, data)  # type: ignore[misc]
    assert (key.serial, key.model, key.batch, key.aaguid) == ("123", "YubiKey 5 NFC", "PO-7", None)

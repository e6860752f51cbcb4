"""The one-line error helpers."""

from slocal.errors import SlocalError, first_line


def test_first_line_of_a_message():
    assert first_line(ValueError("bad header\nmore detail")) == "bad header"
    assert first_line(RuntimeError("x" * 500), 20) == "x" * 20


def test_an_empty_message_gives_the_exception_type():
    # torch.load on a 0-byte file raises with an empty message: the error must still be one line.
    assert first_line(EOFError()) == "EOFError"
    assert first_line(RuntimeError("   \n")) == "RuntimeError"


def test_slocal_error_names_the_path(tmp_path):
    assert str(SlocalError("empty", tmp_path / "m.pt")) == f"{tmp_path / 'm.pt'}: empty"

"""C2SP signed notes and checkpoints, including the spec's published example."""

from __future__ import annotations

import pytest

from audit.merkle import tree_hash
from audit.note import NoteError, NoteSigner, Verifier, checkpoint_text, open_note, parse_checkpoint, sign_note

# The example of golang.org/x/mod/sumdb/note, the reference implementation of the C2SP spec.
EXAMPLE_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
EXAMPLE_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_the_published_example_verifies() -> None:
    verifier = Verifier.parse(EXAMPLE_KEY)
    assert str(verifier) == EXAMPLE_KEY and verifier.key_id.hex() == "c74f20a3"
    assert open_note(EXAMPLE_NOTE, verifier).startswith("If you think cryptography")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(EXAMPLE_NOTE.replace("problem is", "problem was"), verifier)


def test_sign_and_open_a_checkpoint() -> None:
    signer = NoteSigner.generate("audit.example/betting")
    root = tree_hash([])
    note = sign_note(checkpoint_text("audit.example/betting", 0, root), signer)
    assert note.splitlines()[-1].startswith("\u2014 audit.example/betting ")
    assert parse_checkpoint(open_note(note, Verifier.parse(signer.verifier_key()))) == (
        "audit.example/betting",
        0,
        root,
    )


@pytest.mark.parametrize(
    "bad_key",
    ["nonsense", "a+zzzzzzzz+AAAA", "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
)
def test_malformed_or_mismatched_keys(bad_key: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(bad_key)


def test_a_note_by_another_key_is_refused() -> None:
    ours, theirs = NoteSigner.generate("log"), NoteSigner.generate("log")
    note = sign_note("hello\n", theirs)
    with pytest.raises(NoteError, match="no signature by the trusted key"):
        open_note(note, ours.verifier)


@pytest.mark.parametrize(
    "text", ["origin\n12\n", "origin\n012\nAAAA\n", "origin\n1\nnot base64!\n", "origin\n1\nAAAA\n"]
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)

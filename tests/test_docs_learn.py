"""docs/learn, the tutorial: every ```python block runs, in order, in one namespace per
chapter (a block whose first line is ``# raises: SomeError`` must raise it, and with
``# raises: SomeError "text"`` say that text); every
"Source:" pointer names a file and a def/class that exist; the index lists the
chapters in order; make_figures.py draws its PNGs."""
import pathlib
import re

import pytest

LEARN = pathlib.Path(__file__).resolve().parents[1] / "docs" / "learn"
ROOT = LEARN.parents[1]
CHAPTERS = sorted(LEARN.glob("[0-9][0-9]-*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_RAISES = re.compile(r'#\s*raises:\s*(\w+)(?:\s+"([^"]*)")?')
_POINTER = re.compile(r"`((?:tinydl|models)/[\w/]+\.py)::([\w.]+)`")


def python_blocks(path):
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


def test_at_least_eight_chapters_listed_in_order_in_the_index():
    assert len(CHAPTERS) >= 8
    index = (LEARN / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\((\d\d-[\w-]+\.md)\)", index)
    assert linked == [p.name for p in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_points_at_sources_that_exist(chapter):
    pointers = _POINTER.findall(chapter.read_text(encoding="utf-8"))
    assert pointers, f"{chapter.name} names no `file.py::name` source"
    for file, name in pointers:
        text = (ROOT / file).read_text(encoding="utf-8")
        for part in name.split("."):      # Class.method: both defined in the file
            assert re.search(rf"^\s*(?:def|class) {part}\b|^{part} = ", text, re.M), f"{file}::{name}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_runs(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)              # what a chapter writes lands here
    blocks = python_blocks(chapter)
    assert blocks, f"{chapter.name} has no python block"
    namespace = {"__name__": f"learn_{chapter.stem.replace('-', '_')}"}
    for i, code in enumerate(blocks, 1):
        compiled = compile(code, f"{chapter.name}, block {i}", "exec")
        expected = _RAISES.match(code.lstrip().splitlines()[0])
        if expected is None:
            exec(compiled, namespace)
            continue
        with pytest.raises(Exception) as info:
            exec(compiled, namespace)
        names = [cls.__name__ for cls in type(info.value).__mro__]
        assert expected.group(1) in names, f"{chapter.name} block {i}: expected {expected.group(1)}, got {names}"
        assert (expected.group(2) or "") in str(info.value), f"{chapter.name} block {i}: {info.value}"


def test_make_figures_draws_every_png(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_figures", LEARN / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (LEARN / "figures").glob("*.png"))
    for path in written:
        assert path.stat().st_size > 5_000
    for path in (LEARN / "figures").glob("*.png"):        # the committed pictures stay small
        assert path.stat().st_size < 200_000

"""Labeling functions: the heuristics a user writes to vote on text classes.

A labeling function takes one text and returns the name of a class it believes the text
belongs to, or ``None`` to abstain.  Each function is expected to be noisy and to cover
only part of the data; :mod:`labeling_dag.weak_supervision` combines their votes in the
style of Snorkel.

A user's file of labeling functions looks like::

    from labeling_dag.labeling_functions import keyword_lf, labeling_function, regex_lf

    @labeling_function()
    def mentions_score(text: str) -> str | None:
        return "sport" if " beat " in text else None

    election = keyword_lf("election", ["election", "ballot"], "politics")
    earnings = regex_lf("earnings", r"\\bq[1-4] (profit|earnings)\\b", "business")

:func:`load_labeling_functions` imports such a file and :func:`apply_labeling_functions`
turns the functions' votes into the integer matrix Snorkel expects.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

ABSTAIN = -1
"""The vote-matrix entry for a function that abstained, as in Snorkel."""

LabelingFunctionBody = Callable[[str], str | None]


@dataclass(frozen=True)
class LabelingFunction:
    """A named heuristic that maps a text to a class name, or ``None`` to abstain."""

    name: str
    function: LabelingFunctionBody

    def __call__(self, text: str) -> str | None:
        return self.function(text)


def labeling_function(name: str | None = None) -> Callable[[LabelingFunctionBody], LabelingFunction]:
    """Decorator that marks ``text -> class name | None`` as a labeling function.

    The function's own name is used unless ``name`` is given.  Only decorated functions
    (and those built by :func:`keyword_lf` / :func:`regex_lf`) are collected by
    :func:`load_labeling_functions`, so a file may also hold undecorated helpers.
    Write it with parentheses: ``@labeling_function()``.
    """
    if callable(name):
        raise TypeError(f"write @labeling_function() with parentheses above {name.__name__!r}")

    def decorate(function: LabelingFunctionBody) -> LabelingFunction:
        return LabelingFunction(name=_checked_name(name or function.__name__), function=function)

    return decorate


def keyword_lf(name: str, keywords: Iterable[str], label: str, *, whole_words: bool = True) -> LabelingFunction:
    """A labeling function that votes ``label`` when the text contains any of ``keywords``.

    Matching ignores case.  With ``whole_words`` a keyword only matches where it is not
    part of a longer word ("art" does not match "party"); otherwise any substring matches.
    """
    words = [keyword for keyword in keywords if keyword]
    if not words:
        raise ValueError(f"keyword_lf {name!r}: no keywords given")
    alternatives = "|".join(re.escape(word) for word in words)
    # Look-arounds rather than \b so that keywords that start or end with punctuation
    # ("c++", "#ad") still match as whole words.
    pattern = rf"(?<!\w)(?:{alternatives})(?!\w)" if whole_words else alternatives
    return regex_lf(name, pattern, label)


def regex_lf(name: str, pattern: str, label: str, flags: int = re.IGNORECASE) -> LabelingFunction:
    """A labeling function that votes ``label`` when ``pattern`` matches anywhere in the text."""
    try:
        compiled = re.compile(pattern, flags)
    except re.error as error:
        raise ValueError(f"regex_lf {name!r}: invalid pattern {pattern!r}: {error}") from error
    if not label:
        raise ValueError(f"labeling function {name!r}: empty label")

    def vote(text: str) -> str | None:
        return label if compiled.search(text) else None

    return LabelingFunction(name=_checked_name(name), function=vote)


def load_labeling_functions(path: Path) -> tuple[LabelingFunction, ...]:
    """Import the Python file at ``path`` and return its labeling functions in definition order.

    The file is imported under a fresh module name each time, so that an edited file is
    read again and two files with the same name never share a module.  Raises ValueError
    naming the file when it is missing, cannot be imported, holds no labeling functions,
    or holds two with the same name.
    """
    module = _import_file(Path(path))
    found: list[LabelingFunction] = []
    for value in vars(module).values():
        # An alias (``other = first``) binds the same object again: count it once.
        if isinstance(value, LabelingFunction) and not any(value is seen for seen in found):
            found.append(value)
    if not found:
        raise ValueError(f"{path}: no labeling functions found; mark them with @labeling_function()")
    names = [lf.name for lf in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: more than one labeling function is named {', '.join(map(repr, duplicates))}")
    return tuple(found)


def apply_labeling_functions(
    lfs: Sequence[LabelingFunction], texts: Sequence[str], class_names: Sequence[str]
) -> np.ndarray:
    """Run every function on every text: the (n_texts, n_lfs) vote matrix of class ids.

    Entry ``[i, j]`` is the index in ``class_names`` of the class function ``j`` voted for
    text ``i``, or ``ABSTAIN`` (-1), the layout Snorkel's label model takes.  A vote for a
    class outside ``class_names``, a vote that is not a string, or an exception inside a
    function raises ValueError naming the function and the text's index.
    """
    class_ids = {class_name: index for index, class_name in enumerate(class_names)}
    if len(class_ids) != len(class_names):
        raise ValueError(f"class names are not unique: {list(class_names)}")
    votes = np.full((len(texts), len(lfs)), ABSTAIN, dtype=np.int64)
    for column, lf in enumerate(lfs):
        for row, text in enumerate(texts):
            votes[row, column] = _vote(lf, row, text, class_ids)
    return votes


def _vote(lf: LabelingFunction, row: int, text: str, class_ids: dict[str, int]) -> int:
    """One function's vote on one text as a class id, with errors that say where it failed."""
    try:
        vote = lf(text)
    except Exception as error:
        raise ValueError(
            f"labeling function {lf.name!r} failed on text {row}: {type(error).__name__}: {error}"
        ) from error
    if vote is None:
        return ABSTAIN
    if not isinstance(vote, str):
        raise ValueError(
            f"labeling function {lf.name!r} returned {vote!r} for text {row}; expected a class name or None"
        )
    if vote not in class_ids:
        raise ValueError(
            f"labeling function {lf.name!r} voted {vote!r} for text {row}, "
            f"which is not one of the classes {sorted(class_ids)}"
        )
    return class_ids[vote]


def _import_file(path: Path) -> ModuleType:
    """Execute a Python file as a new module; any failure becomes a ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{path}: labeling function file not found")
    module_name = f"_labeling_functions_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python module (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs because dataclasses and typing in the user's file look their
    # module up in sys.modules; removed afterwards so repeated loads do not accumulate.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ValueError(f"{path}: syntax error at line {error.lineno}: {error.msg}") from error
    except Exception as error:
        raise ValueError(f"{path}: importing the file failed: {type(error).__name__}: {error}") from error
    finally:
        sys.modules.pop(module_name, None)
    return module


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a labeling function needs a non-empty name, got {name!r}")
    return name

"""Labeling functions for the BBC News topics (business, entertainment, politics, sports, tech).

The heuristics a user would write in ten minutes for ``bench/text_economics.py``'s ``loop+lf``
arm: one keyword list per topic of the words a news reader associates with it, plus two
patterns (a match score, a sum of money in billions). None reads a label; each is noisy and
abstains on most texts. Words shared by several topics ("market", "firm", "star", "game")
are left out, as a user who wants votes they can trust would leave them out.
"""

from __future__ import annotations

import re

from labeling_dag.labeling_functions import keyword_lf, labeling_function, regex_lf

sports_words = keyword_lf(
    "sports_words",
    [
        "football",
        "championship",
        "cup",
        "coach",
        "striker",
        "midfielder",
        "goalkeeper",
        "tennis",
        "rugby",
        "cricket",
        "olympic",
        "athletics",
        "premiership",
    ],
    "sports",
)

politics_words = keyword_lf(
    "politics_words",
    ["election", "parliament", "mps", "tory", "tories", "lib dems", "prime minister", "chancellor", "downing street"],
    "politics",
)

business_words = keyword_lf(
    "business_words",
    ["shares", "profits", "investors", "economy", "economic growth", "interest rates", "inflation", "stock market"],
    "business",
)

tech_words = keyword_lf(
    "tech_words",
    ["software", "computer", "computers", "internet", "broadband", "mobile phone", "gadget", "microsoft", "virus"],
    "tech",
)

entertainment_words = keyword_lf(
    "entertainment_words",
    ["film", "films", "album", "singer", "actor", "actress", "oscar", "oscars", "box office", "comedy"],
    "entertainment",
)

# "won 2-1", "a 24-17 victory": a score between two numbers; dates and ranges are written
# with words ("5 to 6 March") or carry a month after them, which the look-ahead refuses.
score = regex_lf(
    "score",
    r"\b\d{1,2}-\d{1,2}\b(?!\s+(?:january|february|march|april|may|june|july|august|september|october|november|december))",
    "sports",
)

_BILLIONS = re.compile(r"[£$€]\s?\d+(?:\.\d+)?\s?(?:bn|billion)\b", re.IGNORECASE)


@labeling_function()
def billions(text: str) -> str | None:
    """Business when a text names two or more sums in billions: one may be a budget or a
    government's figure, several are usually a company's or a market's accounts."""
    return "business" if len(_BILLIONS.findall(text)) >= 2 else None

"""Segmentation and part-of-speech tagging engines: one ``tag(text)`` interface.

``rjieba`` (jieba-rs, Rust; the default), ``jieba`` (pure Python, jieba.posseg) and
``hybrid`` (rjieba, with jieba.posseg redoing the stretches where rjieba guessed a
name). They share jieba's dictionary, and rjieba's plain cut equals jieba's.
Agreement, speed and entity scores per engine: ``python
benchmarks/eval_entities.py``.
"""

import re

from transforms.text.tags import NAME_TAG_TYPES

ENGINES = ("auto", "hybrid", "rjieba", "jieba")


class _RjiebaEngine:
    name = "rjieba"

    def __init__(self) -> None:
        import rjieba

        self._jieba = rjieba.Jieba()
        self.tag = self._jieba.tag

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._jieba.add_word(word, freq, tag)


class _JiebaEngine:
    name = "jieba"

    def __init__(self) -> None:
        import logging

        import jieba
        import jieba.posseg

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        self._posseg = jieba.posseg.POSTokenizer(self._tokenizer)

    def tag(self, text: str) -> list[tuple[str, str]]:
        return [(pair.word, pair.flag) for pair in self._posseg.cut(text)]

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._tokenizer.add_word(word, freq, tag)


class _HybridEngine:
    """rjieba, with jieba.posseg redoing the stretches where rjieba guessed a word.

    Both share jieba's dictionary and route, so they cut known text identically. They
    differ where a run of characters is not in the dictionary: rjieba segments it with
    jieba's plain HMM and then tags the pieces, jieba.posseg segments and tags it in
    one joint POS-HMM pass, which delimits unknown names better (陈泽伟 rather than
    陈泽伟腹). So every unknown multi-character Han word rjieba produces, together
    with the single characters around it (the HMM's input), is tagged again by
    jieba.posseg; the route outside that stretch is the same, so the result is what
    jieba.posseg gives for the whole text, at a fraction of its cost.
    """

    name = "hybrid"

    def __init__(self) -> None:
        self._fast = _RjiebaEngine()
        self._slow = _JiebaEngine()
        self._has_word = self._fast._jieba.has_word

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._fast.add_word(word, freq, tag)
        self._slow.add_word(word, freq, tag)

    def tag(self, text: str) -> list[tuple[str, str]]:
        tokens = self._fast.tag(text)
        has_word = self._has_word
        result: list[tuple[str, str]] = []
        done = 0  # tokens[:done] are settled in result
        index = 0
        count = len(tokens)
        while index < count:
            word, tag = tokens[index]
            if (
                tag not in NAME_TAG_TYPES
                or len(word) < 2
                or has_word(word)
                or not _HAN_WORD.fullmatch(word)
            ):
                index += 1
                continue
            # Widen to the single characters and other guessed words around it.
            start = index
            while start > done and self._guessed(tokens[start - 1][0]):
                start -= 1
            end = index + 1
            while end < count and self._guessed(tokens[end][0]):
                end += 1
            result.extend(tokens[done:start])
            result.extend(
                self._slow.tag("".join(word for word, _ in tokens[start:end]))
            )
            done = index = end
        if not done:
            return tokens
        result.extend(tokens[done:])
        return result

    def _guessed(self, word: str) -> bool:
        return _HAN_WORD.fullmatch(word) is not None and (
            len(word) == 1 or not self._has_word(word)
        )


_HAN_WORD = re.compile(r"[\u4e00-\u9fd5]+")


def available_engines() -> list[str]:
    """Engines that import here, fastest first (``hybrid`` needs both libraries).

    ``auto`` takes the first: rjieba, whose entities match jieba's on nearly all
    real posts at a fraction of its cost (``benchmarks/eval_entities.py`` measures
    both).
    """
    found = []
    try:
        import rjieba  # noqa: F401

        found.append("rjieba")
    except ImportError:
        pass
    try:
        import jieba  # noqa: F401

        found.append("jieba")
    except ImportError:
        pass
    if found == ["rjieba", "jieba"]:
        found.insert(1, "hybrid")
    return found


def make_engine(engine: str):
    """The engine named ``engine`` (one of ``ENGINES``; ``auto``: the first of
    ``available_engines()``), with jieba's dictionary loaded."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "auto":
        engines = available_engines()
        if not engines:
            raise ImportError("neither rjieba nor jieba is installed")
        engine = engines[0]
    return {"hybrid": _HybridEngine, "rjieba": _RjiebaEngine, "jieba": _JiebaEngine}[
        engine
    ]()

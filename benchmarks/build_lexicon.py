"""Build the entity resources of transforms.text from WeiboNER's train split only.

Writes two files into ``transforms/resources/``:

- ``weibo_ner_names.txt``: a jieba user dictionary of the names annotated in train
  (PER.NAM, ORG.NAM, LOC.NAM, GPE.NAM), kept when annotated as a name in at least
  half of the places the string occurs in train, so that names stay whole and get a
  type (``nr``, ``nt``, ``ns``, ``nl``);
- ``entity_model.json``: a logistic model that keeps or drops each entity candidate
  (features: see ``transforms.text.candidate_features``), with its threshold.

Every setting (L2 strength, threshold) is chosen by 5-fold cross-validation on train:
each fold's candidates are generated with a lexicon built from the other folds
(cross-fitting, so the model does not learn to trust a lexicon that saw the answer),
and scored with the measure of ``benchmarks/eval_entities.py``. dev is never read.

    python benchmarks/build_lexicon.py            # writes the two files, prints CV
    python benchmarks/build_lexicon.py --dry-run  # cross-validation only
    python benchmarks/build_lexicon.py --disable trim  # CV without a candidate rule
"""

import argparse
import json
import random
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_entities import gold_pairs, ner_path, prf, read_conll  # noqa: E402

from transforms import text as text_module  # noqa: E402
from transforms.text import (  # noqa: E402
    EntityModel,
    TextAnalyzer,
    candidate_features,
    clean_text,
    entity_candidates,
    extract_entities,
)
from transforms.topics import normalize_topic  # noqa: E402

RESOURCES = ROOT / "transforms" / "resources"
LEXICON_FILE = RESOURCES / "weibo_ner_names.txt"
MODEL_FILE = RESOURCES / "entity_model.json"
TYPE_TAGS = {"PER": "nr", "ORG": "nt", "GPE": "ns", "LOC": "nl"}
FOLDS = 5
SEED = 20240611
MIN_NAME_SHARE = 0.5
L2_GRID = (0.3, 1.0, 3.0)
THRESHOLDS = [step / 4 for step in range(-12, 13)]
EPOCHS = 300
# Weights smaller than this are left out of the shipped model.
MIN_WEIGHT = 0.01


def build_lexicon(messages) -> dict[str, str]:
    """name -> type for names annotated in ``messages`` often enough to trust."""
    named: Counter = Counter()
    types: dict[str, Counter] = defaultdict(Counter)
    hand_stop = text_module.read_word_list(text_module.DEFAULT_NOT_NAMES)
    for _, names in messages:
        for name, name_type in names:
            name = unicodedata.normalize("NFKC", name).strip()
            named[name] += 1
            types[name][name_type] += 1
    texts = [unicodedata.normalize("NFKC", text) for text, _ in messages]
    lexicon = {}
    for name, count in named.items():
        if len(name) < 2 or any(char.isspace() for char in name):
            continue
        if not text_module.is_word(name) or normalize_topic(name) in hand_stop:
            continue
        if not any("\u4e00" <= char <= "\u9fff" for char in name) and len(name) < 3:
            continue
        occurrences = sum(text.count(name) for text in texts)
        if count / max(occurrences, count) >= MIN_NAME_SHARE:
            lexicon[name] = types[name].most_common(1)[0][0]
    return lexicon


def write_lexicon(lexicon: dict[str, str], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            "# Names annotated in WeiboNER train (hltcoe/golden-horse, research use),\n"
            "# built by benchmarks/build_lexicon.py: word, tag (nr person, nt\n"
            "# organisation, ns place, nl location). Do not edit by hand.\n"
        )
        for name in sorted(lexicon):
            handle.write(f"{name} {TYPE_TAGS[lexicon[name]]}\n")


def analyzer_with(
    lexicon: dict[str, str], engine: str, disabled: frozenset = frozenset()
) -> TextAnalyzer:
    """An analyzer with only this lexicon, the hand stop names and no model."""
    with tempfile.NamedTemporaryFile(
        "w", suffix=".txt", encoding="utf-8", delete=False
    ) as handle:
        for name, name_type in lexicon.items():
            handle.write(f"{name} {TYPE_TAGS[name_type]}\n")
    analyzer = TextAnalyzer(
        user_dict_paths=[handle.name], engine=engine, default_resources=False
    )
    Path(handle.name).unlink()
    analyzer.rules = analyzer.rules._replace(
        not_names=frozenset(text_module.read_word_list(text_module.DEFAULT_NOT_NAMES)),
        disabled=disabled,
    )
    return analyzer


def candidates_of(analyzer: TextAnalyzer, messages, offset: int):
    """(tokens per message, [(message, features, label)]) with every candidate."""
    # A model must be present for the model-only candidate rules to fire.
    rules = analyzer.rules._replace(model=EntityModel({}, 0.0))
    gold = gold_pairs(messages)
    token_lists = []
    rows = []
    for index, (text, _) in enumerate(messages):
        tokens = analyzer.tag(clean_text(text))
        token_lists.append(tokens)
        for position in range(len(tokens)):
            for candidate in entity_candidates(tokens, position, rules):
                label = (index, normalize_topic(candidate.name)) in gold
                rows.append(
                    (
                        offset + index,
                        candidate_features(tokens, candidate, rules),
                        label,
                    )
                )
    return token_lists, rules, rows


def train(rows, l2: float) -> dict[str, float]:
    """L2-regularized logistic regression, full-batch Adam on sparse features."""
    vocabulary: dict[str, int] = {}
    row_index, col_index = [], []
    for number, (_, features, _) in enumerate(rows):
        for feature in features:
            row_index.append(number)
            col_index.append(vocabulary.setdefault(feature, len(vocabulary)))
    row_index = np.array(row_index)
    col_index = np.array(col_index)
    labels = np.array([label for _, _, label in rows], dtype=float)
    weights = np.zeros(len(vocabulary))
    first = np.zeros_like(weights)
    second = np.zeros_like(weights)
    rate, beta1, beta2 = 0.1, 0.9, 0.999
    for step in range(1, EPOCHS + 1):
        logits = np.bincount(row_index, weights=weights[col_index], minlength=len(rows))
        error = 1.0 / (1.0 + np.exp(-logits)) - labels
        gradient = np.bincount(
            col_index, weights=error[row_index], minlength=len(weights)
        )
        gradient += l2 * weights
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient**2
        weights -= (
            rate
            * (first / (1 - beta1**step))
            / (np.sqrt(second / (1 - beta2**step)) + 1e-8)
        )
    names = list(vocabulary)
    return {
        names[i]: float(weights[i])
        for i in range(len(names))
        if abs(weights[i]) >= MIN_WEIGHT
    }


def pair_score(
    token_lists, rules, messages, weights, threshold
) -> tuple[int, int, int]:
    model_rules = rules._replace(model=EntityModel(weights, threshold))
    gold = gold_pairs(messages)
    predicted = set()
    for index, tokens in enumerate(token_lists):
        for name, _ in extract_entities(tokens, model_rules):
            predicted.add((index, normalize_topic(name)))
    return len(predicted & gold.keys()), len(predicted), len(gold)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="auto", choices=text_module.ENGINES)
    parser.add_argument("--dry-run", action="store_true", help="cross-validate only")
    parser.add_argument(
        "--disable",
        nargs="*",
        default=[],
        metavar="RULE",
        help="candidate rules to switch off (ablation; implies --dry-run)",
    )
    args = parser.parse_args(argv)
    path = ner_path("train")
    if not path.exists():
        print(
            f"missing {path}: the shared data folder (../shared/data) is not here",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    messages = read_conll(path)
    order = list(range(len(messages)))
    random.Random(SEED).shuffle(order)
    folds = [[messages[i] for i in order[k::FOLDS]] for k in range(FOLDS)]

    # Cross-fitted candidates: fold k tagged with a lexicon from the other folds.
    fold_data = []
    offset = 0
    for k in range(FOLDS):
        others = [message for j in range(FOLDS) if j != k for message in folds[j]]
        analyzer = analyzer_with(
            build_lexicon(others), args.engine, frozenset(args.disable)
        )
        token_lists, rules, rows = candidates_of(analyzer, folds[k], offset)
        fold_data.append((token_lists, rules, rows))
        offset += len(folds[k])
    positives = sum(label for data in fold_data for _, _, label in data[2])
    total = sum(len(data[2]) for data in fold_data)
    print(
        f"{len(messages)} train messages, {total} candidates, {positives} of them names"
    )

    # Out-of-fold F1 for each L2 strength and threshold.
    best = None
    for l2 in L2_GRID:
        counts = {threshold: [0, 0, 0] for threshold in THRESHOLDS}
        for k in range(FOLDS):
            rows = [row for j in range(FOLDS) if j != k for row in fold_data[j][2]]
            weights = train(rows, l2)
            token_lists, rules, _ = fold_data[k]
            for threshold in THRESHOLDS:
                scored = pair_score(token_lists, rules, folds[k], weights, threshold)
                counts[threshold] = [
                    a + b for a, b in zip(counts[threshold], scored, strict=True)
                ]
        for threshold, (correct, predicted, gold) in counts.items():
            figures = prf(correct, predicted, gold)
            if best is None or figures["f1"] > best[2]["f1"]:
                best = (l2, threshold, figures)
        top = max(counts, key=lambda t: prf(*counts[t])["f1"])
        print(f"l2={l2}: best threshold {top}, CV {prf(*counts[top])}")
    l2, threshold, figures = best
    # The same CV without the model (lexicon and rules only), for comparison.
    no_model = [0, 0, 0]
    for k in range(FOLDS):
        token_lists, rules, _ = fold_data[k]
        rules = rules._replace(model=None)
        gold = gold_pairs(folds[k])
        predicted = {
            (index, normalize_topic(name))
            for index, tokens in enumerate(token_lists)
            for name, _ in extract_entities(tokens, rules)
        }
        scored = (len(predicted & gold.keys()), len(predicted), len(gold))
        no_model = [a + b for a, b in zip(no_model, scored, strict=True)]
    print(f"CV without the model (cross-fitted lexicon + rules): {prf(*no_model)}")
    print(f"chosen: l2={l2}, threshold={threshold}, CV {figures}")

    if args.dry_run or args.disable:
        return 0
    lexicon = build_lexicon(messages)
    write_lexicon(lexicon, LEXICON_FILE)
    weights = train([row for data in fold_data for row in data[2]], l2)
    model = {
        "about": "Entity candidate model trained on WeiboNER train by "
        "benchmarks/build_lexicon.py; keep a candidate when the sum of its feature "
        "weights is at least the threshold.",
        "l2": l2,
        "threshold": threshold,
        "cross_validation": figures,
        "weights": dict(sorted(weights.items())),
    }
    with open(MODEL_FILE, "w", encoding="utf-8") as handle:
        json.dump(model, handle, ensure_ascii=False, indent=0)
        handle.write("\n")
    print(
        f"wrote {LEXICON_FILE.name} ({len(lexicon)} names), {MODEL_FILE.name} "
        f"({len(weights)} weights) in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

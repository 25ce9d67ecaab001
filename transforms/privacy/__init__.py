"""Personal information: masking in text and keyed pseudonyms for authors.

One module per step: ``folding`` (what the text means), ``numbers`` and ``emails``
(recognizers), ``masking`` (a text), ``dead_letters`` (a rejected line), ``keys``
(pseudonyms and their key); ``placeholders`` holds the tokens they write.

Pure functions; the pipeline applies them at ingest, before any other step sees a
post. Masks replace a match with a placeholder token, so a phone number can never
become a topic, a keyword or part of a dead letter::

    >>> mask_pii("call 13812345678 or mail a.b@example.com")
    'call <PHONE> or mail <EMAIL>'
    >>> mask_pii("电话１３９．１２３４．５６７８")
    '电话<PHONE>'

Matching runs on what the text means, not on how it is written: every character is
folded first (NFKC, so full-width digits and ``＠``/``．`` become ASCII; every kind of
space becomes a space; zero-width characters vanish; letters are lower-cased), and
the recognizers run on the folded text. Each folded character remembers which
characters of the original it came from, so the output is the original text with
only the matched spans replaced.

Recognizers are precise rather than greedy: an ID number must carry a valid province,
birth date and (18 digits) checksum; a bank card an issuer prefix, a length that
issuer uses and a valid Luhn digit; a phone number must be valid in the numbering
plan (``phonenumbers``); an e-mail needs a domain with a top-level label. Every
recognizer does a bounded amount of work per character, so masking takes time linear
in the text's length whatever the text is.
"""

from transforms.privacy.dead_letters import (
    MAX_LITERAL_CHARS,
    mask_dead_letter,
    mask_raw_line,
)
from transforms.privacy.emails import (
    email_spans,
)
from transforms.privacy.folding import (
    FOLD_TABLE,
    Folded,
    fold,
    fold_escaped,
)
from transforms.privacy.keys import (
    DEFAULT_KEY_FILE,
    KEY_BYTES,
    KEY_ENV_VAR,
    KEY_FILE_ENV_VAR,
    PseudonymKeyError,
    PseudonymKeyMismatch,
    PseudonymKeyUnreadable,
    create_key_file,
    key_fingerprint,
    load_key_from_source,
    load_or_create_key,
    parse_key,
    pseudonymize_to_int,
    resolve_key_source,
)
from transforms.privacy.masking import (
    MIN_ACCOUNT_ID_CHARS,
    fold_account_id,
    mask_escaped,
    mask_pii,
)
from transforms.privacy.numbers import (
    card_issuer_range,
    is_bank_card,
    is_phone_number,
    is_valid_id_card,
    is_valid_old_id_card,
    number_spans,
    passes_luhn,
)
from transforms.privacy.placeholders import (
    PLACEHOLDER_ACCOUNT,
    PLACEHOLDER_BANK_CARD,
    PLACEHOLDER_EMAIL,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_PHONE,
    PLACEHOLDER_USER_ID,
    PLACEHOLDERS,
)

__all__ = [
    "DEFAULT_KEY_FILE",
    "FOLD_TABLE",
    "Folded",
    "KEY_BYTES",
    "KEY_ENV_VAR",
    "KEY_FILE_ENV_VAR",
    "MAX_LITERAL_CHARS",
    "MIN_ACCOUNT_ID_CHARS",
    "PLACEHOLDERS",
    "PLACEHOLDER_ACCOUNT",
    "PLACEHOLDER_BANK_CARD",
    "PLACEHOLDER_EMAIL",
    "PLACEHOLDER_ID_CARD",
    "PLACEHOLDER_PHONE",
    "PLACEHOLDER_USER_ID",
    "PseudonymKeyError",
    "PseudonymKeyMismatch",
    "PseudonymKeyUnreadable",
    "card_issuer_range",
    "create_key_file",
    "email_spans",
    "fold",
    "fold_account_id",
    "fold_escaped",
    "is_bank_card",
    "is_phone_number",
    "is_valid_id_card",
    "is_valid_old_id_card",
    "key_fingerprint",
    "load_key_from_source",
    "load_or_create_key",
    "mask_dead_letter",
    "mask_escaped",
    "mask_pii",
    "mask_raw_line",
    "number_spans",
    "parse_key",
    "passes_luhn",
    "pseudonymize_to_int",
    "resolve_key_source",
]

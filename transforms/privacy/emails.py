"""E-mail addresses in folded text, found by a bounded scan around each ``@``, as
(start, end, placeholder) spans."""

from collections.abc import Iterator

from transforms.privacy.placeholders import PLACEHOLDER_EMAIL

# E-mail: RFC 5322's dot-atom local part (any letter, so Unicode local parts too)
# and a domain of letter/digit/hyphen labels (IDN included).
_LOCAL_SYMBOLS = frozenset(".!#$%&'*+/=?^_`{|}~-")
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
# Internationalized top-level domains people write in Chinese text; a CJK label
# after a dot is a top-level domain only when it starts with one of these.
_IDN_TLDS = tuple(
    sorted(
        "中国 中國 公司 网络 網絡 网址 在线 商城 集团 我爱你 手机 政务 公益 香港 "
        "台湾 台灣 新加坡 游戏 企业 娱乐 移动 联通 时尚 信息 商标 网店 购物 中文网 "
        "广东 佛山 八卦 慈善 招聘 点看 健康 珠宝 餐厅 食品 世界 大众汽车 "
        "онлайн рф".split(),
        key=len,
        reverse=True,
    )
)


_MAIL_TLDS = frozenset(
    "com net org cn edu gov info io me co uk de jp kr fr ru hk tw mo sg us ca au nz "
    "biz cc tv xyz top vip club site online mobi asia in it es nl se ch".split()
) | frozenset(_IDN_TLDS)


def _is_local_char(char: str) -> bool:
    return char.isalnum() or char in _LOCAL_SYMBOLS


def _is_label_char(char: str) -> bool:
    return char.isalnum() or char == "-"


def _local_start(text: str, at: int) -> int | None:
    """Where the local part before ``text[at] == '@'`` starts, or None."""
    start = at
    while start > 0 and at - start < _MAX_LOCAL and _is_local_char(text[start - 1]):
        start -= 1
    local = text[start:at]
    # Prose glued before an ASCII address ("邮箱zhangsan@..."): the address is the
    # ASCII tail; a wholly non-ASCII local part ("张三@例子.中国") is kept whole.
    if not local.isascii():
        tail = len(local)
        while tail > 0 and local[tail - 1].isascii():
            tail -= 1
        if tail < len(local) and any(char.isalnum() for char in local[tail:]):
            start += tail
    while start < at and text[start] == ".":
        start += 1
    return start if start < at else None


def _domain_end(text: str, at: int) -> int | None:
    """Where the domain after ``text[at] == '@'`` ends, or None when none follows."""
    labels: list[tuple[int, int]] = []
    position, limit = at + 1, min(len(text), at + 1 + _MAX_DOMAIN)
    while position < limit:
        end = position
        while end < limit and _is_label_char(text[end]):
            end += 1
        if end == position:
            break
        labels.append((position, end))
        if end < limit and text[end] == ".":
            position = end + 1
        else:
            break
    while labels:
        start, end = labels[-1]
        tld = _top_level_label(text[start:end])
        if len(labels) >= 2 and tld:
            return start + tld
        labels.pop()
    return None


def _top_level_label(label: str) -> int:
    """How much of ``label`` is a top-level domain (0: none): ASCII letters (or an
    ``xn--`` punycode label), or a known internationalized one; text glued after it
    (``com联系我``) is not part of it."""
    label = label.rstrip("-")
    if label.startswith("xn--"):
        end = 4
        while end < len(label) and label[end].isascii() and _is_label_char(label[end]):
            end += 1
        return end if end > 4 else 0
    end = 0
    while end < len(label) and label[end].isascii() and label[end].isalpha():
        end += 1
    if end >= 2:
        # "com2" or "com-x" is no top-level domain; "com联系我" is "com".
        if end < len(label) and label[end].isascii():
            return 0
        return end
    if end == 0:
        for tld in _IDN_TLDS:
            if label.startswith(tld):
                return len(tld)
    return 0


def email_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """Spans of e-mail addresses in ``text`` (folded): bounded work per ``@``."""
    at = text.find("@")
    while at != -1:
        start = _local_start(text, at)
        end = _domain_end(text, at) if start is not None else None
        # "@李涛@lee.green" is two mentions; "@zhangsan@qq.com" an address: after
        # an "@", only a top-level domain that mail commonly uses makes an address.
        if (
            start is not None
            and end is not None
            and start > 0
            and text[start - 1] == "@"
            and text[text.rfind(".", at, end) + 1 : end] not in _MAIL_TLDS
        ):
            end = None
        if start is not None and end is not None:
            yield start, end, PLACEHOLDER_EMAIL
            at = text.find("@", end)
        else:
            at = text.find("@", at + 1)

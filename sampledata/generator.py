"""A deterministic Weibo-like post stream with planted bursts and known truth.

What it makes, for a seed and a config:
- background traffic over several days with a Beijing diurnal rhythm (quiet at 4 am,
  peak at 9-10 pm), authors of Zipf-distributed activity, Zipf-popular hashtags that
  stay stationary, mentions, reposts with ``//@name:`` chains, emoticons, t.cn links,
  three ``created_at`` forms, crawl-order jitter;
- planted bursts of given shapes (sharp, slow rise, small-but-clear, overnight, a new
  hashtag, an old hashtag reawakening) with exact onsets and participants;
- a few malformed lines, redelivered duplicates and personal data (phones, ID cards,
  e-mails) in text, so every path of the pipeline is exercised.

``generate(config)`` returns the lines and a ``Truth`` (counts, planted bursts, exact
distinct authors per planted hashtag) that tests and evaluations compare against.
"""

import dataclasses
import datetime
import gzip
import itertools
import json
import math
import random
from pathlib import Path

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
# Share of a day's posts per local hour, Weibo-like: night trough, evening peak.
DIURNAL = (
    0.55,
    0.35,
    0.22,
    0.15,
    0.12,
    0.14,
    0.25,
    0.45,
    0.70,
    0.85,
    0.95,
    1.00,
    1.05,
    0.95,
    0.90,
    0.95,
    1.00,
    1.05,
    1.10,
    1.20,
    1.35,
    1.45,
    1.40,
    0.95,
)
PLACES = (
    "北京",
    "上海",
    "广州",
    "深圳",
    "成都",
    "重庆",
    "武汉",
    "杭州",
    "南京",
    "西安",
    "雅安",
    "宁波",
    "天津",
    "长沙",
    "郑州",
    "昆明",
    "四川",
    "云南",
    "浙江",
    "广东",
)
ORGS = (
    "人民日报",
    "新华社",
    "央视新闻",
    "清华大学",
    "北京大学",
    "中国移动",
    "国家电网",
    "公安局",
    "教育部",
    "卫生部",
    "红十字会",
    "消防队",
    "气象局",
    "最高人民法院",
)
PEOPLE = (
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "杨帆",
    "赵磊",
    "黄磊",
    "周杰伦",
    "吴敏",
    "徐静",
    "孙丽",
    "马云",
    "胡歌",
    "林志玲",
    "姚明",
    "刘翔",
    "韩寒",
)
EVENTS = (
    "暴雨",
    "地震",
    "交通事故",
    "火灾",
    "停电",
    "高考",
    "演唱会",
    "马拉松",
    "招聘会",
    "雾霾",
    "台风",
    "房价",
    "堵车",
    "食品安全",
    "医疗改革",
    "春运",
    "油价",
    "限号",
)
COMMENTS = (
    "太可怕了",
    "大家注意安全",
    "支持",
    "希望早日查明真相",
    "心疼",
    "为他们祈福",
    "真的假的",
    "转发扩散",
    "求证",
    "不敢相信",
    "这才是正能量",
    "围观中",
    "说得太好了",
    "有关部门怎么看",
    "感动",
    "必须严惩",
    "加油",
    "无语了",
    "同意楼上",
)
VERBS = (
    "出席活动",
    "接受采访",
    "发表演讲",
    "回应质疑",
    "参加比赛",
    "探望灾民",
    "发布新歌",
)
EMOTICONS = (
    "[哈哈]",
    "[泪]",
    "[蜡烛]",
    "[怒]",
    "[赞]",
    "[心]",
    "[围观]",
    "[doge]",
    "[鼓掌]",
)
FIXED_HASHTAGS = ("热门微博", "微博公益", "随手拍", "今日头条", "iPhone", "Beam")
MENTION_ACCOUNTS = (
    "人民日报",
    "央视新闻",
    "头条新闻",
    "新浪新闻",
    "微博搞笑排行榜",
    "中国新闻网",
    "平安北京",
    "Bryan_Cheung",
    "Apache_Beam",
)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NICK_CHARS = "小大老阿明华丽静晨星月风云雪花叶林海天宝贝猫狗熊鱼糖果子"
_ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclasses.dataclass(frozen=True)
class PlantedBurst:
    """Extra posts on ``hashtag`` starting at ``onset`` (aware datetime).

    ``shape``: ``sharp`` (peak in the first hour, then halving every 2 hours) or
    ``ramp`` (rising linearly over ``rise_hours``, then decaying). ``participants`` is
    the number of distinct extra authors; each posts ``posts_per_author`` times on
    average. ``new`` hashtags have no background traffic at all.
    """

    hashtag: str
    onset: datetime.datetime
    participants: int
    shape: str = "sharp"
    rise_hours: int = 1
    hours: int = 8
    posts_per_author: float = 1.3
    new: bool = False
    quiet_before_hours: int = 0  # background of this hashtag silenced before onset

    def hourly_weights(self) -> list[float]:
        if self.shape == "sharp":
            weights = [0.5 ** (hour / 2) for hour in range(self.hours)]
        elif self.shape == "ramp":
            rise = [(hour + 1) / self.rise_hours for hour in range(self.rise_hours)]
            fall = [
                0.5 ** ((hour + 1) / 2) for hour in range(self.hours - self.rise_hours)
            ]
            weights = rise + fall
        else:
            raise ValueError(f"unknown burst shape {self.shape!r}")
        total = sum(weights)
        return [weight / total for weight in weights]


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    start: datetime.datetime = datetime.datetime(2026, 11, 20, tzinfo=BEIJING)
    days: int = 3
    posts_per_day: int = 15_000
    authors: int = 8_000
    hashtags: int = 120
    hashtag_share: float = 0.35  # posts carrying a background hashtag
    mention_share: float = 0.15
    repost_share: float = 0.4
    malformed_lines: int = 25
    duplicate_share: float = 0.01
    pii_share: float = 0.003
    out_of_order_minutes: int = 20
    bursts: tuple[PlantedBurst, ...] = ()
    seed: int = 7


@dataclasses.dataclass
class Truth:
    """What the stream holds, for tests and evaluations to compare against."""

    lines: int = 0
    posts: int = 0
    duplicates: int = 0
    malformed: int = 0
    background_hashtags: list[str] = dataclasses.field(default_factory=list)
    bursts: list[dict] = dataclasses.field(default_factory=list)
    # Distinct authors per planted hashtag (burst and background posts together).
    hashtag_authors: dict[str, int] = dataclasses.field(default_factory=dict)
    pii: list[str] = dataclasses.field(default_factory=list)
    user_ids_sample: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, indent=1)


def default_sample_config(seed: int = 7) -> GeneratorConfig:
    """The bundled sample of ``run_local.sh``: 3 days, one surge on an old hashtag and
    a new hashtag born in a surge."""
    start = GeneratorConfig().start
    return GeneratorConfig(
        seed=seed,
        bursts=(
            PlantedBurst(
                "雅安地震", start + datetime.timedelta(days=1, hours=14), 1_500
            ),
            PlantedBurst(
                "法院致歉",
                start + datetime.timedelta(days=2, hours=20),
                900,
                shape="ramp",
                rise_hours=2,
                new=True,
            ),
        ),
    )


def background_hashtags(config: GeneratorConfig) -> list[str]:
    """The stationary background hashtags of a config, most popular first."""
    return _Stream(config).hashtags


def zipf_weights(count: int, exponent: float) -> list[float]:
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


def valid_id_card(rng: random.Random) -> str:
    body = f"{rng.choice(('110105', '510100', '330203'))}19{rng.randint(60, 99)}"
    body += f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(100, 999)}"
    total = sum(
        int(digit) * weight
        for digit, weight in zip(body, _ID_CARD_WEIGHTS, strict=True)
    )
    return body + "10X98765432"[total % 11]


class _Stream:
    """Mutable state of one generation run."""

    def __init__(self, config: GeneratorConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        self.truth = Truth()
        self.nicknames = [self._nickname(index) for index in range(config.authors)]
        self.author_cumulative = list(
            itertools.accumulate(zipf_weights(config.authors, 0.9))
        )
        self.hashtags = self._background_hashtags()
        self.truth.background_hashtags = list(self.hashtags)
        self.hashtag_cumulative = list(
            itertools.accumulate(zipf_weights(len(self.hashtags), 1.0))
        )
        self.recent: list[tuple[str, str, str]] = []  # (id, nickname, text) to repost
        self.next_id = 3_500_000_000_000_000 + config.seed * 10_000_000
        self.planted = {burst.hashtag: set() for burst in config.bursts}

    def _nickname(self, index: int) -> str:
        chars = "".join(
            self.rng.choice(_NICK_CHARS) for _ in range(self.rng.randint(2, 4))
        )
        return f"{chars}{index}"

    def _background_hashtags(self) -> list[str]:
        tags = list(FIXED_HASHTAGS)
        combos = [place + event for place in PLACES for event in EVENTS]
        self.rng.shuffle(combos)
        tags.extend(combos[: max(0, self.config.hashtags - len(tags))])
        new = {burst.hashtag for burst in self.config.bursts if burst.new}
        return [tag for tag in tags if tag not in new]

    def post_id(self) -> str:
        self.next_id += self.rng.randint(1, 5_000)
        return str(self.next_id)

    def sentence(self) -> str:
        rng = self.rng
        form = rng.randrange(4)
        if form == 0:
            text = f"{rng.choice(PLACES)}{rng.choice(EVENTS)}，{rng.choice(COMMENTS)}"
        elif form == 1:
            text = (
                f"【{rng.choice(EVENTS)}】{rng.choice(PLACES)}{rng.choice(ORGS)}发布消息："
                f"{rng.choice(COMMENTS)}"
            )
        elif form == 2:
            text = (
                f"{rng.choice(PEOPLE)}在{rng.choice(PLACES)}{rng.choice(VERBS)}，"
                f"{rng.choice(COMMENTS)}"
            )
        else:
            text = (
                f"{rng.choice(COMMENTS)}，{rng.choice(ORGS)}说"
                f"{rng.choice(PLACES)}的{rng.choice(EVENTS)}"
            )
        if rng.random() < 0.3:
            text += rng.choice(EMOTICONS)
        if rng.random() < 0.15:
            text += " http://t.cn/" + "".join(rng.choice(_ALNUM) for _ in range(7))
        return text

    def pii_text(self) -> str:
        rng = self.rng
        kind = rng.randrange(3)
        if kind == 0:
            value = (
                f"1{rng.choice('3589')}{rng.randint(0, 9)}"
                f"{rng.randint(10_000_000, 99_999_999)}"
            )
            text = f"有线索请联系{value}"
        elif kind == 1:
            value = valid_id_card(rng)
            text = f"寻人启事，身份证号{value}"
        else:
            value = f"tip{rng.randint(100, 999)}@example.com"
            text = f"爆料请发邮件到{value}"
        self.truth.pii.append(value)
        return text

    def compose(self, hashtag: str | None) -> tuple[str, str | None]:
        """Text and repost_of of one post, optionally about ``hashtag``."""
        rng = self.rng
        repost_of = None
        if self.recent and rng.random() < self.config.repost_share:
            parent_id, parent_nick, parent_text = rng.choice(self.recent)
            repost_of = parent_id
            if rng.random() < 0.35:
                text = "转发微博"
            else:
                colon = rng.choice((":", "："))
                text = f"{rng.choice(COMMENTS)}//@{parent_nick}{colon}{parent_text}"[
                    :280
                ]
        else:
            text = self.sentence()
        if hashtag is not None and f"#{hashtag}#" not in text:
            text = (
                f"#{hashtag}# {text}" if rng.random() < 0.7 else f"{text} #{hashtag}#"
            )
        if rng.random() < self.config.mention_share:
            accounts = MENTION_ACCOUNTS + tuple(rng.choices(self.nicknames, k=2))
            text += f" @{rng.choice(accounts)}"
        if rng.random() < self.config.pii_share:
            text += " " + self.pii_text()
        return text, repost_of

    def record(self, when: datetime.datetime, author: int, hashtag: str | None) -> dict:
        text, repost_of = self.compose(hashtag)
        post_id = self.post_id()
        nickname = (
            self.nicknames[author] if author < len(self.nicknames) else f"网友{author}"
        )
        if repost_of is None or self.rng.random() < 0.3:
            self.recent.append((post_id, nickname, text[:120]))
            if len(self.recent) > 200:
                self.recent.pop(0)
        if hashtag in self.planted:
            self.planted[hashtag].add(author)
        form = self.rng.random()
        if form < 0.85:
            created_at: object = (
                when.astimezone(BEIJING).replace(microsecond=0).isoformat()
            )
        elif form < 0.95:
            created_at = int(when.timestamp())
        else:
            created_at = int(when.timestamp() * 1000)
        record = {
            "id": post_id,
            "user_id": f"u{author:07d}",
            "created_at": created_at,
            "text": text,
            "source": "weibo",
        }
        if repost_of:
            record["repost_of"] = repost_of
        if self.rng.random() < 0.5:
            record.update(
                reposts=self.rng.randint(0, 50),
                comments=self.rng.randint(0, 30),
                likes=self.rng.randint(0, 200),
            )
        return record


def _hour_times(
    rng: random.Random, hour_start: datetime.datetime, count: int
) -> list[datetime.datetime]:
    return sorted(
        hour_start + datetime.timedelta(seconds=rng.random() * 3600)
        for _ in range(count)
    )


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:
        return max(0, int(round(rng.gauss(mean, math.sqrt(mean)))))
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _malformed(rng: random.Random, index: int) -> str:
    good = {
        "id": f"bad{index}",
        "user_id": f"u9{index:06d}",
        "created_at": "2026-11-21T10:00:00+08:00",
        "text": "坏数据",
    }
    choice = index % 7
    if choice == 0:
        return ""
    if choice == 1:
        return json.dumps(good, ensure_ascii=False)[:-9]  # truncated JSON
    if choice == 2:
        return json.dumps({**good, "created_at": "yesterday"}, ensure_ascii=False)
    if choice == 3:
        return json.dumps(
            {key: value for key, value in good.items() if key != "user_id"},
            ensure_ascii=False,
        )
    if choice == 4:
        return json.dumps({**good, "text": 12345}, ensure_ascii=False)
    if choice == 5:
        return json.dumps([good["id"], good["text"]], ensure_ascii=False)
    return json.dumps({**good, "created_at": "2026-11-21 10:00:00"}, ensure_ascii=False)


def generate(config: GeneratorConfig) -> tuple[list[str], Truth]:
    """All lines of the stream in crawl order, and the truth about them."""
    stream = _Stream(config)
    rng = stream.rng
    timed: list[tuple[datetime.datetime, dict]] = []
    hours = config.days * 24
    mean_per_hour = config.posts_per_day / sum(DIURNAL)
    silenced = {
        burst.hashtag: (
            burst.onset - datetime.timedelta(hours=burst.quiet_before_hours),
            burst.onset,
        )
        for burst in config.bursts
        if burst.quiet_before_hours
    }
    start = config.start.astimezone(datetime.UTC)
    for hour in range(hours):
        hour_start = start + datetime.timedelta(hours=hour)
        local_hour = hour_start.astimezone(BEIJING).hour
        count = _poisson(rng, mean_per_hour * DIURNAL[local_hour])
        for when in _hour_times(rng, hour_start, count):
            author = rng.choices(
                range(config.authors), cum_weights=stream.author_cumulative
            )[0]
            hashtag = None
            if rng.random() < config.hashtag_share:
                hashtag = rng.choices(
                    stream.hashtags, cum_weights=stream.hashtag_cumulative
                )[0]
                window = silenced.get(hashtag)
                if window and window[0] <= when < window[1]:
                    hashtag = None
            timed.append((when, stream.record(when, author, hashtag)))
    next_author = config.authors
    for burst in config.bursts:
        authors = list(range(next_author, next_author + burst.participants))
        next_author += burst.participants
        posts = max(
            burst.participants, int(round(burst.participants * burst.posts_per_author))
        )
        extra = [authors[index] for index in range(len(authors))]
        extra += rng.choices(authors, k=posts - len(authors))
        rng.shuffle(extra)
        weights = burst.hourly_weights()
        cursor = 0
        onset = burst.onset.astimezone(datetime.UTC)
        for hour, weight in enumerate(weights):
            in_hour = (
                int(round(weight * posts))
                if hour < len(weights) - 1
                else posts - cursor
            )
            for when in _hour_times(
                rng, onset + datetime.timedelta(hours=hour), in_hour
            ):
                if cursor >= len(extra):
                    break
                timed.append((when, stream.record(when, extra[cursor], burst.hashtag)))
                cursor += 1
        stream.truth.bursts.append(
            {
                "hashtag": burst.hashtag,
                "onset": burst.onset.isoformat(),
                "shape": burst.shape,
                "participants": burst.participants,
                "new": burst.new,
                "hours": burst.hours,
            }
        )
    # Crawlers deliver roughly in time order, a few minutes out of order.
    jitter = config.out_of_order_minutes * 60
    timed.sort(key=lambda pair: pair[0].timestamp() + rng.random() * jitter)
    lines: list[str] = []
    for _, record in timed:
        line = json.dumps(record, ensure_ascii=False)
        lines.append(line)
        if rng.random() < config.duplicate_share:
            lines.append(line)  # redelivered verbatim
            stream.truth.duplicates += 1
    for index in range(config.malformed_lines):
        lines.insert(rng.randrange(len(lines) + 1), _malformed(rng, index))
    stream.truth.posts = len(timed)
    stream.truth.malformed = config.malformed_lines
    stream.truth.lines = len(lines)
    stream.truth.hashtag_authors = {
        tag: len(authors) for tag, authors in stream.planted.items()
    }
    stream.truth.user_ids_sample = sorted(
        {record["user_id"] for _, record in timed[:: max(1, len(timed) // 50)]}
    )
    return lines, stream.truth


def write_lines(lines: list[str], path: Path) -> Path:
    """Write lines as JSON Lines, gzip-compressed when ``path`` ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path

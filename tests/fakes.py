"""In-memory stand-ins for Beam's state and timers, to drive a stateful DoFn's
callbacks the way a streaming runner does."""


class FakeValue:
    """A ReadModifyWriteState."""

    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class FakeBag:
    """A BagState that counts its reads."""

    def __init__(self):
        self.items, self.reads = [], 0

    def add(self, item):
        self.items.append(item)

    def read(self):
        self.reads += 1
        return list(self.items)

    def clear(self):
        self.items = []


class FakeTimer:
    """A timer family: the last time set per dynamic tag."""

    def __init__(self):
        self.timers = {}

    def set(self, timestamp, dynamic_timer_tag=""):
        self.timers[dynamic_timer_tag] = timestamp

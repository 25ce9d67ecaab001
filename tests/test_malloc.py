"""The pipeline process's malloc settings, which its worker processes inherit."""

import os
import platform

import pytest

from pipelines.malloc import MALLOC_SETTINGS, hand_back_freed_memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.fixture
def clean_environ(monkeypatch):
    for name in MALLOC_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_workers_inherit_the_settings_and_this_process_takes_them(clean_environ):
    applied = hand_back_freed_memory()
    assert {name: os.environ[name] for name in MALLOC_SETTINGS} == MALLOC_SETTINGS
    assert applied == GLIBC


def test_a_setting_the_user_made_is_kept(clean_environ):
    clean_environ.setenv("MALLOC_ARENA_MAX", "4")
    hand_back_freed_memory()
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
    assert (
        os.environ["MALLOC_TRIM_THRESHOLD_"]
        == MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"]
    )


def test_a_setting_that_is_not_a_number_is_left_to_glibc(clean_environ):
    clean_environ.setenv("MALLOC_TRIM_THRESHOLD_", "lots")
    assert hand_back_freed_memory() is False

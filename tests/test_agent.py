"""agent.py: every model turn of a reply asks for at most what is left of its hold, and once
it is spent the reply is told so instead of asking again."""

import pytest
from agents import ModelSettings

from chat.agent import Usage, _MeteredChatCompletions
from chat.errors import ChatError


def metered(limit: int | None) -> _MeteredChatCompletions:
    model = _MeteredChatCompletions.__new__(_MeteredChatCompletions)  # no client needed here
    model.metered = Usage(limit=limit)
    return model


def test_each_turn_asks_for_what_is_left_of_the_hold_and_none_is_asked_once_it_is_spent():
    model = metered(4096)
    assert model._within(ModelSettings(max_tokens=4096)).max_tokens == 4096
    model.metered.add(4000)  # a turn that called tools
    assert model._within(ModelSettings(max_tokens=4096)).max_tokens == 96
    assert model._within(ModelSettings(max_tokens=50)).max_tokens == 50, "a smaller cap stays"
    model.metered.add(96)
    with pytest.raises(ChatError) as spent:
        model._within(ModelSettings(max_tokens=4096))
    assert spent.value.code == "quota_exceeded" and spent.value.recoverable is False


def test_without_a_limit_the_settings_are_left_alone_and_spend_still_adds_up():
    model = metered(None)
    settings = ModelSettings(max_tokens=123)
    assert model._within(settings) is settings
    model.metered.add(10)
    model.metered.add(-5)  # a provider's nonsense counts as nothing
    assert model.metered.output_tokens == 10 and model.metered.left() is None

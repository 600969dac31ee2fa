"""Settings read from the environment: every variable the docs name reaches its setting."""
import pytest

from chalicelib.settings import Settings, SettingsError


def test_probe_cap_and_alert_throttle_are_read_from_the_environment():
    settings = Settings.from_env({"NETIMMUNE_MAX_CONCURRENT_CHECKS": "1", "NETIMMUNE_ALERTS_PER_WINDOW": "3",
                                  "NETIMMUNE_ALERT_WINDOW_MINUTES": "60"})
    assert (settings.max_concurrent_checks, settings.alerts_per_window, settings.alert_window_minutes) == (1, 3, 60)


def test_unset_variables_keep_the_defaults():
    settings = Settings.from_env({})
    assert (settings.max_concurrent_checks, settings.alerts_per_window, settings.alert_window_minutes) == (4, 10, 15)


@pytest.mark.parametrize("name", ["MAX_CONCURRENT_CHECKS", "ALERTS_PER_WINDOW", "ALERT_WINDOW_MINUTES"])
def test_a_cap_of_zero_is_refused_naming_the_variable(name):
    """A probe cap of 0 would make every verification wait for ever; a zero window divides by zero."""
    with pytest.raises(SettingsError, match=f"NETIMMUNE_{name} must be positive"):
        Settings.from_env({f"NETIMMUNE_{name}": "0"})

"""Settings read from the environment: every variable the docs name reaches its setting."""
import re

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


NUMBERS = ["REFERRAL_TTL", "NEGATIVE_TTL", "GRANT_DAYS", "KEY_RATE_PER_MINUTE", "CLIENT_RATE_PER_MINUTE",
           "HALF_LIFE_HOURS", "SCAN_COOLDOWN_SECONDS", "MAX_CONCURRENT_CHECKS", "RESOLVER_PORT", "CHECK_TIMEOUT",
           "SMTP_PORT", "ALERTS_PER_WINDOW", "ALERT_WINDOW_MINUTES", "PROXY_PORTS"]


@pytest.mark.parametrize("name", NUMBERS)
def test_a_number_that_does_not_parse_is_refused_naming_the_variable_and_what_it_expects(name):
    expects = "an? (integer|number of seconds|port number from 1 to 65535)|comma-separated port numbers from 1 to 65535"
    with pytest.raises(SettingsError, match=rf"^NETIMMUNE_{name} must be ({expects}), got 'abc'$"):
        Settings.from_env({f"NETIMMUNE_{name}": "abc"})


@pytest.mark.parametrize("name, value", [("SMTP_PORT", "0"), ("SMTP_PORT", "70000"), ("RESOLVER_PORT", "53,54"),
                                         ("PROXY_PORTS", "3128,65536"), ("SCAN_PORTS", "-22")])
def test_a_port_outside_1_to_65535_is_refused_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^NETIMMUNE_{name} must be .* from 1 to 65535, got '{value}'$"):
        Settings.from_env({f"NETIMMUNE_{name}": value})


def test_ports_read_as_numbers():
    settings = Settings.from_env({"NETIMMUNE_PROXY_PORTS": "3128,8080", "NETIMMUNE_SMTP_PORT": "2525"})
    assert (settings.proxy_ports, settings.smtp_port, settings.resolver_port) == ((3128, 8080), 2525, None)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_check_timeout_must_be_a_positive_finite_number_of_seconds(value):
    """0 or a negative timeout fails every probe at once; nan or inf waits on a tarpit for ever."""
    with pytest.raises(SettingsError, match="NETIMMUNE_CHECK_TIMEOUT"):
        Settings.from_env({"NETIMMUNE_CHECK_TIMEOUT": value})


def test_a_check_timeout_may_be_a_fraction_of_a_second():
    assert Settings.from_env({"NETIMMUNE_CHECK_TIMEOUT": "0.5"}).check_timeout == 0.5


@pytest.mark.parametrize("value,dev_mode", [("1", True), ("yes", True), ("On", True), ("0", False), ("off", False),
                                            ("no", False), ("", False)])
def test_a_flag_reads_the_usual_spellings_of_on_and_off(value, dev_mode):
    assert Settings.from_env({"NETIMMUNE_DEV_MODE": value}).dev_mode is dev_mode


def test_a_flag_that_is_neither_on_nor_off_is_refused_rather_than_read_as_off():
    with pytest.raises(SettingsError, match="^NETIMMUNE_DEV_MODE must be 1, true, yes or on, or 0, false, no or off, "
                                            "got 'ture'$"):
        Settings.from_env({"NETIMMUNE_DEV_MODE": "ture"})


@pytest.mark.parametrize("make", [
    lambda url: Settings(endpoint=url),
    lambda url: Settings.from_env({"NETIMMUNE_ENDPOINT": url}),
    lambda url: Settings().with_overrides(endpoint=url),
], ids=["constructed", "from-env", "overridden"])
def test_the_endpoint_loses_a_trailing_slash_wherever_it_comes_from(make):
    """The canary is fetched at endpoint + /v1/canary/…: a `//` there is a 404, and the open proxy is refuted."""
    assert make("http://127.0.0.1:18102/").endpoint == "http://127.0.0.1:18102"


@pytest.mark.parametrize("endpoint", ["notaurl", "ftp://127.0.0.1:8080", "http://127.0.0.1:8080/?node=1",
                                      "http://127.0.0.1:8080/#top", "http://admin:secret@127.0.0.1:8080",
                                      "http://127.0.0.1:99999"])
def test_a_malformed_endpoint_variable_is_refused_naming_it(endpoint):
    with pytest.raises(SettingsError, match=rf"^NETIMMUNE_ENDPOINT: endpoint '{re.escape(endpoint)}' "):
        Settings.from_env({"NETIMMUNE_ENDPOINT": endpoint})


def test_the_default_endpoint_is_where_serve_listens_by_default():
    from chalicelib.cli.netimmune import serve

    defaults = {param.name: param.default for param in serve.params}
    assert Settings().endpoint == f"http://{defaults['host']}:{defaults['port']}"

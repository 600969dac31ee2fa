"""Network probes that verify a report against the suspect itself; each returns a verdict and a transcript."""
from .canary import Canary
from .open_proxy import DEFAULT_PROXY_PORTS, ProxyProtocol, check_open_proxy
from .open_relay import DEFAULT_RELAY_PORTS, check_open_relay
from .open_resolver import check_open_resolver
from .port_scan import DEFAULT_SCAN_PORTS, scan_ports
from .result import CheckResult, Verdict
from .runner import CHECKS, run_check, run_checks

__all__ = [
    "CHECKS", "DEFAULT_PROXY_PORTS", "DEFAULT_RELAY_PORTS", "DEFAULT_SCAN_PORTS", "Canary", "CheckResult",
    "ProxyProtocol", "Verdict", "check_open_proxy", "check_open_relay", "check_open_resolver", "run_check",
    "run_checks", "scan_ports",
]

"""Where a service's endpoints live on this server, relative to the public base URL."""

from __future__ import annotations

SERVICE_PATH = "/services/{service_id}"
PAR_PATH = SERVICE_PATH + "/par"


def default_issuer(public_base_url: str, service_id: int) -> str:
    return public_base_url + SERVICE_PATH.format(service_id=service_id)


def default_par_endpoint(public_base_url: str, service_id: int) -> str:
    return public_base_url + PAR_PATH.format(service_id=service_id)

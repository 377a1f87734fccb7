"""Mock invoicing backend and card processor, served over loopback HTTP for the harness."""

from __future__ import annotations

from harness.backend.faults import Fault, FaultPlan
from harness.backend.processor import (
    AuthorisationRequest,
    CardState,
    Decision,
    IssuerCard,
    Processor,
)
from harness.backend.seed import empty_store, load_processor, processor_from, seed_store
from harness.backend.server import BackendServer, RequestRecord
from harness.backend.store import BackendError, BackendStore, Receipts

__all__ = [
    "AuthorisationRequest",
    "BackendError",
    "BackendServer",
    "BackendStore",
    "CardState",
    "Decision",
    "Fault",
    "FaultPlan",
    "IssuerCard",
    "Processor",
    "Receipts",
    "RequestRecord",
    "empty_store",
    "load_processor",
    "processor_from",
    "seed_store",
]

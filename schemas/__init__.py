"""Pure Pydantic models of catalog-ingest: products, batch messages and batch results.

No I/O and no settings here, so any service can import these to validate data.
"""

from schemas.product import PricingTier, Product, ProductPatch, format_loc
from schemas.batch import BatchMessage, records_digest
from schemas.result import BatchResult, BatchStatus, RecordError, SupersededField

__all__ = [
    "BatchMessage",
    "BatchResult",
    "BatchStatus",
    "PricingTier",
    "Product",
    "ProductPatch",
    "RecordError",
    "SupersededField",
    "format_loc",
    "records_digest",
]

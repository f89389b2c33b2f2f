"""The product as stored in ``products.json``: field names, order and meaning of today's catalog."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, create_model, model_validator
from pydantic.fields import FieldInfo


MAX_PRODUCT_ID_LENGTH = 200
# Control (Cc) and format (Cf: zero-width, bidi overrides, soft hyphen, BOM) characters, and line
# and paragraph separators, are invisible or rewrite what is shown: with them, an id can look
# like another product's id while being a different product.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _a_clean_id(value: str) -> str:
    """One product, one spelling: no surrounding space, NFC, nothing invisible."""
    if value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        return value  # the usual id, at once: printable ASCII is NFC and holds nothing invisible
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    if not unicodedata.is_normalized("NFC", value):
        raise ValueError("must be in Unicode NFC form (composed characters); normalize it to NFC before sending")
    for char in value:
        if unicodedata.category(char) in INVISIBLE_CATEGORIES:
            raise ValueError(f"must not contain control, format or invisible characters (found U+{ord(char):04X} "
                             f"{unicodedata.name(char, 'unnamed')})")
    return value


ProductId = Annotated[str, Field(min_length=1, max_length=MAX_PRODUCT_ID_LENGTH, strict=True),
                      AfterValidator(_a_clean_id)]
# Strict so that "350" or true never become a price; ints are still accepted as floats.
PriceAed = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Text = Annotated[str, Field(strict=True)]


class PricingTier(BaseModel):
    """One price of a product, in AED, optionally valid between two dates."""

    model_config = ConfigDict(extra="forbid")

    tier_name: Annotated[str, Field(min_length=1, strict=True)]
    price_aed: PriceAed
    currency: Literal["AED"] = "AED"
    validity_start: dt.date | None = None
    validity_end: dt.date | None = None

    @model_validator(mode="after")
    def _validity_in_order(self) -> PricingTier:
        if self.validity_start and self.validity_end and self.validity_end < self.validity_start:
            raise ValueError("validity_end is before validity_start")
        return self


class Product(BaseModel):
    """A complete catalog product. Unknown fields are errors, so a typo never vanishes."""

    model_config = ConfigDict(extra="forbid")

    product_id: ProductId
    product_name: Annotated[str, Field(min_length=1, strict=True)]
    pricing: list[PricingTier]
    inclusions: list[Text]
    active: StrictBool = True
    supplier_name: Text | None = None
    destination_city: Text | None = None
    category: Text | None = None
    description_short: Text | None = None
    description_long: Text | None = None
    duration_hours: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None
    exclusions: list[Text] | None = None
    booking_policy: Text | None = None
    source_document: list[Text] | Text | None = None

    def to_record(self) -> dict[str, Any]:
        """The product as a JSON-ready dict, every field present, in schema order."""
        return self.model_dump(mode="json")


PRODUCT_FIELDS: tuple[str, ...] = tuple(Product.model_fields)


def _optional(field: FieldInfo) -> tuple[Any, None]:
    """The same field, constraints kept, but it may be absent. Null only where a product allows it,
    so whether a patch is valid never depends on the product it lands on (or on batch order)."""
    annotation = field.annotation
    return (Annotated[annotation, *field.metadata] if field.metadata else annotation, None)


def _patch_model() -> type[BaseModel]:
    id_field = Product.model_fields["product_id"]
    optional = {name: _optional(field) for name, field in Product.model_fields.items() if name != "product_id"}
    return create_model(  # type: ignore[call-overload]
        "ProductPatch",
        __config__=ConfigDict(extra="forbid"),
        __doc__=(
            "A batch record before merging: only ``product_id`` is required; every field it gives must be "
            "valid.\n\nA record for an existing product replaces the top-level fields it names; a record "
            "for a new product must be a complete ``Product``. Derived from ``Product``, so the two never "
            "drift apart."
        ),
        product_id=(Annotated[id_field.annotation, *id_field.metadata], ...),
        **optional,
    )


ProductPatch = _patch_model()


def format_loc(loc: Sequence[int | str]) -> str:
    """Turn a Pydantic error location into a readable field path: ``pricing[0].price_aed``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path

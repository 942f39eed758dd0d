from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

from services.kit.schemas import Page, Timestamp

URL_MAX = 2000  # the column's width


def _fits(url: AnyHttpUrl) -> AnyHttpUrl:
    # The URL is stored as normalised (host punycoded, a path added), which can be longer than
    # what was sent: the stored form must fit.
    if len(str(url)) > URL_MAX:
        raise ValueError(f"URL should have at most {URL_MAX} characters once normalised")
    return url


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://sistem.kementerian.go.id/hooks/cerdas",
                    "events": ["assessment.published"],
                }
            ]
        }
    )

    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=URL_MAX), AfterValidator(_fits)] = Field(
        examples=["https://sistem.kementerian.go.id/hooks/cerdas"]
    )
    events: list[str] = Field(min_length=1, max_length=50, examples=[["assessment.published"]])


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    regions: list[str] | None = Field(
        description="The regions whose events it hears (its key's); null: every region"
    )
    active: bool
    created_at: Timestamp


class NewSubscriptionOut(SubscriptionOut):
    secret: str = Field(description="Signs every delivery; shown only in this answer")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: str
    event: str
    status: str = Field(description="pending, succeeded, failed or cancelled")
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status code")
    last_error: str | None = Field(
        description='Why the last attempt failed, as a short class: "HTTP 500", "timeout", '
        '"connection refused", "blocked: private address", … (never the receiver\'s answer)'
    )
    delivered_at: Timestamp | None
    next_attempt_at: Timestamp | None
    payload: dict[str, Any]


class SubscriptionPage(Page[SubscriptionOut]):
    """Subscriptions, all on one page (``next_cursor`` null)."""


class DeliveryPage(Page[DeliveryOut]):
    """A subscription's deliveries, all on one page (``next_cursor`` null)."""

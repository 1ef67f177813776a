"""Reads of webhooks, shaped for the pages. A publisher's reads are scoped to their own
endpoints (another's is as good as missing); operations staff read every endpoint."""

from django.db.models import Count, Max, Q, QuerySet

from webhooks.models import Delivery, DeliveryState, Endpoint


def _with_counts(endpoints: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
    return endpoints.annotate(
        pending_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.PENDING)),
        failed_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.FAILED)),
        delivered_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.DELIVERED)),
        last_attempt_at=Max("deliveries__last_attempt_at"),
    )


def endpoints_of(*, owner) -> QuerySet[Endpoint]:
    return _with_counts(Endpoint.objects.filter(owner=owner)).order_by("-id")


def endpoints_all() -> QuerySet[Endpoint]:
    return _with_counts(Endpoint.objects.select_related("owner")).order_by("-id")


def endpoint_for(*, endpoint_id: int, owner=None) -> Endpoint | None:
    """The endpoint; with `owner`, only if it is theirs."""
    endpoints = Endpoint.objects.select_related("owner").filter(pk=endpoint_id)
    if owner is not None:
        endpoints = endpoints.filter(owner=owner)
    return endpoints.first()


def deliveries_of(*, endpoint: Endpoint | None = None, state: str = "", owner=None) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.select_related("event", "endpoint", "endpoint__owner")
    if endpoint is not None:
        deliveries = deliveries.filter(endpoint=endpoint)
    if owner is not None:
        deliveries = deliveries.filter(endpoint__owner=owner)
    if state in DeliveryState.values:
        deliveries = deliveries.filter(state=state)
    return deliveries.order_by("-id")


def delivery_for(*, delivery_id: int, owner=None) -> Delivery | None:
    deliveries = Delivery.objects.select_related("event", "endpoint", "endpoint__owner").filter(
        pk=delivery_id
    )
    if owner is not None:
        deliveries = deliveries.filter(endpoint__owner=owner)
    delivery = deliveries.first()
    if delivery is not None:
        delivery.attempt_list = list(delivery.attempts.select_related("actor").order_by("-number"))
    return delivery


def delivery_state_counts(*, owner=None) -> dict[str, int]:
    deliveries = Delivery.objects.all() if owner is None else Delivery.objects.filter(endpoint__owner=owner)
    counts = dict(deliveries.values_list("state").annotate(n=Count("id")).order_by())
    return {state: counts.get(state, 0) for state in DeliveryState.values}

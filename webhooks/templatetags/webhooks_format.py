from django import template

register = template.Library()


@register.filter
def last_answer(delivery) -> str:
    """A delivery's last outcome in a few words: the status code, or the error."""
    if delivery.last_status_code and not delivery.last_error:
        return f"HTTP {delivery.last_status_code}"
    if delivery.last_error:
        return delivery.last_error[:120]
    return "–"

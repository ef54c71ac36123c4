"""Schemathesis hooks for scripts/schemathesis.

The service enforces a few rules that relate one field to another, or to the clock, which
JSON Schema cannot state. Generated bodies are made to keep them, so that a body valid by
the schema is valid for the service and positive-data checks keep their full strength. A
body that breaks its schema elsewhere still breaks it: these only touch bodies whose parts
are already well formed.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

# The service refuses an outcomeTimestamp more than 5 minutes ahead of its clock.
FUTURE_LIMIT = timedelta(minutes=4)


def _feedback_in_the_past(body):
    items = body.get("feedback")
    if not isinstance(items, list):
        return
    now = datetime.now(timezone.utc)
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("outcomeTimestamp"), str):
            continue
        try:
            when = datetime.fromisoformat(item["outcomeTimestamp"])
        except ValueError:
            continue
        if when.tzinfo is not None and when > now + FUTURE_LIMIT:
            item["outcomeTimestamp"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _selections_in_draft_orders(body):
    """order-select: every selection names a resource of context.draftOrders."""
    context = body.get("context")
    if body.get("hook") != "order-select" or not isinstance(context, dict):
        return
    selections, orders = context.get("selections"), context.get("draftOrders")
    if not isinstance(selections, list) or not isinstance(orders, dict):
        return
    entries = orders.setdefault("entry", [])
    if not isinstance(entries, list):
        return
    for selection in selections:
        if isinstance(selection, str) and selection.count("/") == 1:
            kind, ident = selection.split("/")
            entries.append({"resource": {"resourceType": kind, "id": ident}})


def _prefetched_patient_is_the_context_patient(body):
    """The prefetched Patient is the patient of context.patientId."""
    context, prefetch = body.get("context"), body.get("prefetch")
    if not isinstance(context, dict) or not isinstance(prefetch, dict):
        return
    patient = prefetch.get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient" and isinstance(context.get("patientId"), str):
        patient["id"] = context["patientId"]


def _authorization_for_the_context_patient(body):
    """fhirAuthorization.patient, when given, is the patient of context.patientId."""
    context, authorization = body.get("context"), body.get("fhirAuthorization")
    if not isinstance(context, dict) or not isinstance(authorization, dict):
        return
    if isinstance(authorization.get("patient"), str) and isinstance(context.get("patientId"), str):
        authorization["patient"] = context["patientId"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # Every phase's cases pass here (the coverage phase's are not drawn from strategies).
    body = case.body
    if isinstance(body, dict):
        _feedback_in_the_past(body)
        _selections_in_draft_orders(body)
        _prefetched_patient_is_the_context_patient(body)
        _authorization_for_the_context_patient(body)

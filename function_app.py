"""Azure Functions entry point: triggers and bindings only; the logic lives in shared/."""

import azure.functions as func

from shared import ingest, processor, retention
from shared.api import handlers as workitem_api
from shared.config import ALERTS_QUEUE, STORAGE_CONNECTION

# Anonymous at the platform level on purpose: Azure Monitor's Secure Webhook sends an
# Entra ID bearer token, not a function key; shared/auth.py verifies that token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("receive_alert")
@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def receive_alert(req: func.HttpRequest) -> func.HttpResponse:
    return ingest.handle(req)


@app.function_name("process_alert")
@app.queue_trigger(arg_name="msg", queue_name=ALERTS_QUEUE, connection=STORAGE_CONNECTION)
def process_alert(msg: func.QueueMessage) -> None:
    processor.handle(msg.get_body().decode("utf-8"), msg.dequeue_count or 1, msg.id)


# Daily at 02:30 UTC: resolved and closed work items older than RETENTION_DAYS go.
@app.function_name("purge_expired")
@app.timer_trigger(arg_name="timer", schedule="0 30 2 * * *", run_on_startup=False)
def purge_expired(timer: func.TimerRequest) -> None:
    retention.run()


# -- the work item API: Entra ID bearer tokens with our app roles (shared/api/security.py) --


@app.function_name("list_workitems")
@app.route(route="workitems", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_workitems(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.list_workitems(req)


@app.function_name("get_workitem")
@app.route(route="workitems/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.get_workitem(req)


@app.function_name("workitem_history")
@app.route(route="workitems/{id}/history", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def workitem_history(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.workitem_history(req)


@app.function_name("event_payload")
@app.route(
    route="workitems/{id}/events/{eventId}/payload",
    methods=["GET"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def event_payload(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.event_payload(req)


@app.function_name("update_workitem")
@app.route(route="workitems/{id}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
def update_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.update_workitem(req)


@app.function_name("search_cis")
@app.route(route="cis", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def search_cis(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.search_cis(req)


@app.function_name("get_ci")
@app.route(route="cis/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_ci(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.get_ci(req)


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.openapi(req)

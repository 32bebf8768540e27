"""Azure Functions entry point: triggers and bindings only; the logic lives in shared/."""

import azure.functions as func

from shared import alert_outbox, alert_sync, board, ingest, processor, retention
from shared.api import handlers as workitem_api
from shared.config import ALERT_SYNC_QUEUE, ALERTS_QUEUE, STORAGE_CONNECTION

# host.json's routePrefix is empty so that the board can answer at "/": every API route
# names its "api/" itself (tests/test_board_server.py holds every route to that).
# Anonymous at the platform level on purpose: Azure Monitor's Secure Webhook sends an
# Entra ID bearer token, not a function key; shared/auth.py verifies that token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("receive_alert")
@app.route(route="api/alerts", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def receive_alert(req: func.HttpRequest) -> func.HttpResponse:
    return ingest.handle(req)


@app.function_name("process_alert")
@app.queue_trigger(arg_name="msg", queue_name=ALERTS_QUEUE, connection=STORAGE_CONNECTION)
def process_alert(msg: func.QueueMessage) -> None:
    processor.handle(msg.get_body().decode("utf-8"), msg.dequeue_count or 1, msg.id)


@app.function_name("sync_alert_state")
@app.queue_trigger(arg_name="msg", queue_name=ALERT_SYNC_QUEUE, connection=STORAGE_CONNECTION)
def sync_alert_state(msg: func.QueueMessage) -> None:
    alert_sync.handle(msg.get_body().decode("utf-8"), msg.dequeue_count or 1, msg.id)


# Every 2 minutes: alert sync messages a PATCH committed but did not queue (its process
# died, the queue failed) are queued now; one bounded batch a run (shared/alert_outbox.py).
@app.function_name("repair_alert_sync")
@app.timer_trigger(arg_name="timer", schedule="0 */2 * * * *", run_on_startup=False)
def repair_alert_sync(timer: func.TimerRequest) -> None:
    alert_outbox.run()


# Daily at 02:30 UTC: resolved and closed work items older than RETENTION_DAYS go.
@app.function_name("purge_expired")
@app.timer_trigger(arg_name="timer", schedule="0 30 2 * * *", run_on_startup=False)
def purge_expired(timer: func.TimerRequest) -> None:
    retention.run()


# -- the work item API: Entra ID bearer tokens with our app roles (shared/api/security.py) --


@app.function_name("list_workitems")
@app.route(route="api/workitems", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_workitems(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.list_workitems(req)


@app.function_name("get_workitem")
@app.route(route="api/workitems/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.get_workitem(req)


@app.function_name("workitem_history")
@app.route(route="api/workitems/{id}/history", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def workitem_history(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.workitem_history(req)


@app.function_name("event_payload")
@app.route(
    route="api/workitems/{id}/events/{eventId}/payload",
    methods=["GET"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def event_payload(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.event_payload(req)


@app.function_name("update_workitem")
@app.route(route="api/workitems/{id}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
def update_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.update_workitem(req)


@app.function_name("search_cis")
@app.route(route="api/cis", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def search_cis(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.search_cis(req)


@app.function_name("get_ci")
@app.route(route="api/cis/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_ci(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.get_ci(req)


@app.function_name("openapi")
@app.route(route="api/openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return workitem_api.openapi(req)


# -- the web board (shared/board.py): static files and its public sign-in settings --


@app.function_name("board_home")
@app.route(route="{ignored:maxlength(0)?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def board_home(req: func.HttpRequest) -> func.HttpResponse:
    return board.redirect_to_board(req)


@app.function_name("board_assets")
@app.route(route="board/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def board_assets(req: func.HttpRequest) -> func.HttpResponse:
    return board.serve_asset(req)


@app.function_name("board_config")
@app.route(route="api/board-config", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def board_config(req: func.HttpRequest) -> func.HttpResponse:
    return board.board_config(req)

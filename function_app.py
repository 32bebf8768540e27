"""Azure Functions entry point: triggers and bindings only; the logic lives in shared/."""

import azure.functions as func

from shared import ingest, processor
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

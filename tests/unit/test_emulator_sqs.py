"""The local emulator's SQS loses no message to a concurrent delete (hostplane.local.emulator
.serialize_sqs_deletes): moto's own DeleteMessage rebuilt a queue's list without its lock, so
a message sent meanwhile could vanish. moto's backend, in this process, on threads as the
emulator's server runs it."""

from __future__ import annotations

import threading

from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from hostplane.local.emulator import serialize_sqs_deletes


def test_a_message_sent_while_another_is_deleted_stays():
    """The delete's last step (the queue's new list put in place) is where a send from another
    thread was lost: the test makes the send arrive right then, every time."""
    serialize_sqs_deletes()
    serialize_sqs_deletes()  # twice is once
    with mock_aws():
        backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        backend.create_queue("hostplane-api")
        for i in range(3):
            backend.send_message("hostplane-api", f"old {i}")
        [first, *_] = backend.receive_message("hostplane-api", 10, 0, 300)
        queue = backend.get_queue("hostplane-api")
        sender = threading.Thread(target=backend.send_message, args=("hostplane-api", "new"))

        class SendsAsTheDeleteFinishes(type(queue)):
            def __setattr__(self, name, value):
                if name == "_messages" and not sender.is_alive() and sender.ident is None:
                    sender.start()
                    sender.join(0.3)  # a send that can go ahead does so now; a serialized one waits
                super().__setattr__(name, value)

        queue.__class__ = SendsAsTheDeleteFinishes
        backend.delete_message("hostplane-api", first.receipt_handle)
        sender.join(10)
        assert sender.ident is not None and not sender.is_alive()
        left = sorted(m.body for m in queue._messages)
        assert left == ["new", "old 1", "old 2"], left

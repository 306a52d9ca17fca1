"""docs/example_app.py, run for real (gunicorn, SQLite, the session's Redis, a stream pool):
an order and its event are committed together and the event is logged once; and in Chromium,
its page misses none of the changes made between its render and its stream's open — because it
hands the stream ``gate.cursor``: opened without it, the same page misses them."""

from __future__ import annotations

from tests.outbox.exampleapp import ExampleApp
from tests.servers import wait_for

UPDATES = ["paid", "packed", "shipped", "delivered", "cancelled"]


def relayed(app: ExampleApp) -> bool:
    """Every outbox row is in Redis (the relay marks a row only once Redis stored it)."""
    return app.query("SELECT count(*) FROM eventgate_outbox WHERE event_id IS NULL") == [(0,)]


def received(page) -> list[dict]:
    return page.evaluate("() => window.received")


def open_delayed(browser, app: ExampleApp, query: str = ""):
    """The orders page, rendered, its stream not opened yet (``?delay_stream=1``)."""
    page = browser.new_page()
    page.goto(f"{app.base}/orders?delay_stream=1{query}")
    page.wait_for_selector("#stream[data-state=waiting]")
    return page


def test_an_order_and_its_event_are_committed_together_and_logged_once(example_app):
    start = example_app.head()

    status, order = example_app.post("/orders", {"item": "green tea"})
    refused, error = example_app.post(f"/orders/{order['id']}/status", {"status": "lost"})

    assert status == 201, order
    assert example_app.query(f"SELECT item, status, version FROM orders WHERE id = {order['id']}"
                             ) == [("green tea", "new", 1)]
    assert refused == 400 and error["error"] == "bad_request", error
    wait_for(lambda: relayed(example_app), 10, "the relay to store the event in Redis")
    [event] = example_app.logged_after(start)
    assert (event.type, event.data) == ("order.created", order)
    assert example_app.query("SELECT event_id FROM eventgate_outbox ORDER BY id DESC LIMIT 1"
                             ) == [(event.id,)]


def test_the_page_gets_every_change_made_between_render_and_stream(example_app, browser):
    _, order = example_app.post("/orders", {"item": "oolong"})
    wait_for(lambda: relayed(example_app), 10, "the order's event in Redis")
    page = open_delayed(browser, example_app)  # rendered: the order, version 1
    start = example_app.head()

    for status in UPDATES:  # after the render, before the stream: in Redis before it opens
        assert example_app.post(f"/orders/{order['id']}/status", {"status": status})[0] == 200
    wait_for(lambda: relayed(example_app), 10, "the 5 updates in Redis")
    page.click("#go")

    wait_for(lambda: len(received(page)) >= len(UPDATES), 10, "the 5 updates on the page")
    assert example_app.post(f"/orders/{order['id']}/status", {"status": "new"})[0] == 200
    wait_for(lambda: len(received(page)) > len(UPDATES), 10, "one more update, live")
    logged = example_app.logged_after(start)
    assert [e.data["version"] for e in logged] == [2, 3, 4, 5, 6, 7]
    assert received(page) == [  # each once, in order, nothing older than the render
        {"id": e.id, "order": order["id"], "version": e.data["version"]} for e in logged]
    assert page.text_content(f"#order-{order['id']} b") == "new"
    assert page.get_attribute(f"#order-{order['id']}", "data-version") == "7"
    page.close()


def test_without_the_cursor_the_same_page_misses_them(example_app, browser):
    # The control: proves the test above can fail. Same flow, stream opened at "now".
    _, order = example_app.post("/orders", {"item": "sencha"})
    wait_for(lambda: relayed(example_app), 10, "the order's event in Redis")
    page = open_delayed(browser, example_app, "&no_cursor=1")

    for status in UPDATES:
        assert example_app.post(f"/orders/{order['id']}/status", {"status": status})[0] == 200
    wait_for(lambda: relayed(example_app), 10, "the 5 updates in Redis")
    page.click("#go")
    page.wait_for_selector("#stream[data-state=live]")
    start = example_app.head()
    assert example_app.post(f"/orders/{order['id']}/status", {"status": "new"})[0] == 200

    wait_for(lambda: received(page), 10, "the update made once the stream was open")
    [after] = example_app.logged_after(start)
    assert received(page) == [{"id": after.id, "order": order["id"], "version": 7}]
    page.close()

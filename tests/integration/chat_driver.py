"""A tiny channel for driving the conversation engine in tests.

It does what a real channel does between two events: keeps the draft (round-tripped through JSON,
as the FSM storage keeps it), and turns "send a text", "press a button", "run a command" and "send a
file" into `Inbound` events.
"""

from __future__ import annotations

import json
from datetime import datetime

from intake.conversation import Attachment, ConversationEngine, Inbound, Outcome, Person, Reply
from intake.draft import Draft


class ChatDriver:
    def __init__(self, engine: ConversationEngine, person: Person, at: datetime) -> None:
        self.engine = engine
        self.person = person
        self.at = at
        self.draft: Draft | None = None
        self.outcome: Outcome | None = None
        self.cases = []  # every CaseView an event created, in order

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, event: Inbound) -> Outcome:
        outcome = await self.engine.handle(event, self.draft, self.person)
        # the channel stores plain JSON between events, so a draft only survives if it serialises
        stored = json.dumps(outcome.draft.to_dict(), ensure_ascii=False) if outcome.draft is not None else None
        self.draft = Draft.from_dict(json.loads(stored)) if stored else None
        self.outcome = outcome
        if outcome.case is not None:
            self.cases.append(outcome.case)
        return outcome

    async def send(self, text: str) -> Outcome:
        return await self.handle(Inbound("text", self.at, text=text))

    async def press(self, value: str) -> Outcome:
        return await self.handle(Inbound("button", self.at, value=value))

    async def command(self, name: str, args: str = "") -> Outcome:
        return await self.handle(Inbound("command", self.at, value=name, args=args))

    async def attach(self, attachment: Attachment, caption: str = "") -> Outcome:
        return await self.handle(Inbound("attachment", self.at, text=caption, attachment=attachment))

    # -- what the person sees --------------------------------------------------------------------

    @property
    def replies(self) -> list[Reply]:
        return list(self.outcome.replies) if self.outcome else []

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.replies]

    @property
    def text(self) -> str:
        """The last message of the last event."""
        return self.texts[-1]

    @property
    def buttons(self) -> list[list[str]]:
        """The button values of the last message, row by row."""
        return [[b.value for b in row] for row in self.replies[-1].buttons] if self.replies else []

    @property
    def labels(self) -> list[list[str]]:
        return [[b.label for b in row] for row in self.replies[-1].buttons] if self.replies else []

    @property
    def button_values(self) -> list[str]:
        return [v for row in self.buttons for v in row]

    @property
    def step(self) -> str | None:
        return self.draft.step if self.draft is not None else None

    @property
    def case(self):
        return self.outcome.case if self.outcome else None

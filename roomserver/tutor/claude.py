"""Claude over the `anthropic` SDK: one streamed reply, the SDK's errors mapped to ours.

Every failure of the upstream (HTTP errors such as 529 overloaded, an `error` event in the
middle of the stream, a connection or read timeout, a stream that outlives `deadline`)
becomes `Unavailable(code="tutor_unavailable")`; nothing else leaves `stream()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anthropic

from roomserver.errors import Unavailable


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


def unavailable(why: str) -> Unavailable:
    return Unavailable(f"the tutor is unavailable: {why}", code="tutor_unavailable")


def make_client(api_key: str, base_url: str, *, timeout: float, max_retries: int) -> anthropic.AsyncAnthropic:
    """The SDK client; `api_key` always explicit so the SDK never searches the environment."""
    return anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url or None,
                                    timeout=timeout, max_retries=max_retries)


class ClaudeBackend:
    mode = "claude"

    def __init__(self, client: anthropic.AsyncAnthropic, model: str, *, max_tokens: int,
                 deadline: float) -> None:
        self.client, self.model = client, model
        self.max_tokens, self.deadline = max_tokens, deadline

    async def stream(self, system: str, messages: list[dict[str, str]], usage: Usage) -> AsyncIterator[str]:
        """Yield text deltas; `usage` is filled in as the stream reports it."""
        try:
            async with asyncio.timeout(self.deadline):
                async with self.client.messages.stream(
                    model=self.model, max_tokens=self.max_tokens, system=system,
                    messages=messages,  # type: ignore[arg-type]
                ) as stream:
                    async for event in stream:
                        if event.type == "message_start":
                            usage.input_tokens = event.message.usage.input_tokens
                            usage.output_tokens = event.message.usage.output_tokens
                        elif event.type == "message_delta":
                            usage.output_tokens = event.usage.output_tokens
                        elif event.type == "text":
                            yield event.text
        except TimeoutError:
            raise unavailable(f"no complete answer within {self.deadline:g} s") from None
        except anthropic.APITimeoutError:
            raise unavailable("the model timed out") from None
        except anthropic.APIStatusError as exc:
            raise unavailable(f"upstream answered HTTP {exc.status_code}") from None
        except anthropic.APIError as exc:
            raise unavailable(f"upstream error ({type(exc).__name__})") from None

    async def close(self) -> None:
        await self.client.close()

"""The sidecar's lifecycle: components -> APIs -> outbound ready -> app -> subscriptions -> ready.

Follows daprd's start order (contract section 1) and its graceful shutdown on SIGTERM/SIGINT or
the Shutdown API: stop delivering, stop serving, close components, leave the name registry.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import signal
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sidecar.app_channel import AppChannel
from sidecar.app_health import AppHealth
from sidecar.breaker import Breakers
from sidecar.components import Subscription
from sidecar.config import SidecarConfig
from sidecar.delivery import Deliverer
from sidecar.durations import format_go_duration
from sidecar.forwarded import HOST_IP_ENV, ForwardedHost
from sidecar.grpc_api import create_grpc_server
from sidecar.http_api import create_http_app
from sidecar.invoke import Invoker
from sidecar.loading import Components, SidecarStartError, create_components
from sidecar.metadata import AppConnection, build_metadata
from sidecar.metrics import ComponentMetrics, metrics_app
from sidecar.nameresolution import Instance, Registry, registry_dir
from sidecar.outbox import Outbox
from sidecar.publishing import Publisher
from sidecar.pubsub.scopes import TopicScopes, scopes_by_pubsub
from sidecar.resiliency import Resiliency, ResiliencyError
from sidecar.resiliency_loading import load_resiliency
from sidecar.resources import Resources, TemplateContext, load_resources, one_per_name
from sidecar.routing import RuleCompileError, check_rules
from sidecar.secretstores.service import Secrets
from sidecar.servers import GrpcServer, HttpServer
from sidecar.state.base import DeleteRequest, SetRequest
from sidecar.state_service import StateService
from sidecar.subscriber import AppSubscriber

logger = logging.getLogger(__name__)

_APP_WAIT_LOG_EVERY = 10.0  #: seconds between "waiting for the app" log lines


@dataclass
class Health:
    outbound_ready: bool = False  #: components loaded, APIs served
    ready: bool = False  #: and the app's subscriptions are being delivered
    not_ready_reason: str = "dapr is starting"


class Runtime:
    """Everything one sidecar process runs; the API layers read from it."""

    def __init__(self, config: SidecarConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.app_id = config.app_id
        self.env = env
        self.health = Health()
        self.extended_metadata: dict[str, str] = {}
        self.components = Components()
        self.stopping = asyncio.Event()
        self.registry = Registry(registry_dir(env))
        self.app_channel: AppChannel | None = None
        if config.app_port is not None:
            self.app_channel = AppChannel(
                config.app_channel_address,
                config.app_port,
                config.app_api_token,
                max_concurrency=config.app_max_concurrency,
                max_header_bytes=config.read_buffer_bytes,
            )
        self.invoker = Invoker(
            self.app_id,
            self.registry,
            self.app_channel,
            config.api_token,
            namespace=config.current_namespace,
            forwarded=ForwardedHost.discover({HOST_IP_ENV: config.host_ip}),
        )
        # Filled in by start(); the API layers only run after that.
        self.state: StateService = StateService({}, self.app_id)
        self.publisher: Publisher = Publisher({}, self.app_id)
        self.secrets = Secrets({})
        self.outbox: Outbox | None = None
        self.topic_scopes: dict[str, TopicScopes] = {}  #: by pubsub name
        self.deliverer = Deliverer(self.app_channel, {}, self.publisher, Resiliency(), self.app_id)
        self.subscriber: AppSubscriber | None = None  #: with an app, from start()
        self._declarative: tuple[Subscription, ...] = ()
        self._subscriber_index = itertools.count(1)
        self._servers: list[HttpServer | GrpcServer] = []
        self._startup: asyncio.Task[None] | None = None
        self.app_health: AppHealth | None = None  #: with --enable-app-health-check
        self._health_task: asyncio.Task[None] | None = None
        self.exit_code = 0  #: 1 when the sidecar stops itself because of a failure
        self.metrics = (
            ComponentMetrics(self.app_id, config.namespace)
            if config.metrics_address is not None
            else None
        )

    def request_shutdown(self) -> None:
        self.stopping.set()

    async def transact(
        self,
        store: str,
        operations: Sequence[SetRequest | DeleteRequest],
        metadata: Mapping[str, str],
        traceparent: str = "",
    ) -> None:
        """A state transaction, through the outbox when the store has one configured."""
        if self.outbox is not None and self.outbox.enabled(store):
            await self.outbox.transact(store, operations, metadata, traceparent)
        else:
            await self.state.transact(store, operations, metadata)

    def next_subscriber_index(self) -> int:
        """A streaming subscription's connection id (daprd's NextSubscriberIndex, from 1)."""
        return next(self._subscriber_index)

    @property
    def subscriptions(self) -> list[Subscription]:
        """The app's subscriptions as the metadata API lists them (daprd's component store)."""
        if self.subscriber is not None:
            return self.subscriber.subscriptions
        return list(self._declarative)

    def metadata(self) -> Any:
        return build_metadata(
            self.app_id,
            self.components.loaded,
            [*self.subscriptions, *self.deliverer.streaming],
            self.extended_metadata,
            AppConnection(
                port=self.config.app_port,
                protocol=self.config.app_protocol,
                channel_address=self.config.app_channel_address,
                health=self.config.app_health,
                # daprd's runtime config turns the flag's default, -1, into 0 (not shown).
                max_concurrency=0
                if self.config.app_max_concurrency == -1
                else self.config.app_max_concurrency,
            ),
        )

    async def start(self, resources: Resources) -> None:
        """Load components and serve the APIs; the app-dependent rest continues in background."""
        try:
            resiliency = load_resiliency(resources.resiliencies, self.app_id)
        except ResiliencyError as exc:
            raise SidecarStartError(f"resiliency: {exc}") from None
        self.invoker.resiliency = resiliency
        self.components = await create_components(resources.components, self.app_id, self.env)
        try:
            # daprd compiles a declarative subscription's rules as it loads it, and exits on a
            # bad one (pkg/runtime/processor/subscriptions.go, AddPendingSubscription).
            check_rules(resources.subscriptions)
        except RuleCompileError as exc:
            raise SidecarStartError(str(exc)) from None
        # daprd compiles every one before its store keeps the last of each name.
        self._declarative = one_per_name(resources.subscriptions)
        stores, pubsubs = self.components.stores, self.components.pubsubs
        # One breaker per component, shared by its inbound and outbound calls (as daprd's).
        breakers = Breakers()
        self.state = StateService(
            stores, self.app_id, self.config.namespace, self.metrics, resiliency, breakers
        )
        scopes = scopes_by_pubsub((c for c, _ in self.components.loaded), self.app_id)
        self.publisher = Publisher(pubsubs, self.app_id, self.metrics, scopes, resiliency, breakers)
        self.secrets = Secrets(self.components.secrets)
        self.topic_scopes = scopes
        self.outbox = Outbox.from_components(
            stores,
            pubsubs,
            self.state,
            self.app_id,
            namespace=self.config.current_namespace,
            publisher=self.publisher,
        )
        if self.outbox is not None:
            await self.outbox.start()
        self.deliverer = Deliverer(
            self.app_channel,
            pubsubs,
            self.publisher,
            resiliency,
            self.app_id,
            self.metrics,
            scopes,
            breakers,
        )
        if self.app_channel is not None:
            self.subscriber = AppSubscriber(
                self._declarative,
                self.deliverer,
                self.app_channel,
                self.app_id,
                resiliency,
                has_pubsubs=bool(pubsubs),
                on_error=self._subscriptions_failed,
                healthy=lambda: self.invoker.app_healthy,
            )

        http = HttpServer(create_http_app(self), self.config.listen_address, self.config.http_port)
        grpc_server = GrpcServer(
            create_grpc_server(self), self.config.listen_address, self.config.grpc_port
        )
        servers: list[HttpServer | GrpcServer] = [grpc_server, http]
        if self.metrics is not None and self.config.metrics_address is not None:
            servers.append(HttpServer(metrics_app(self.metrics), *self.config.metrics_address))
        for server in servers:
            try:
                await server.start()
            except OSError as exc:
                raise SidecarStartError(f"cannot listen on {server.where}: {exc}") from None
            self._servers.append(server)
        logger.info(
            "HTTP API on %s:%s, gRPC API on %s:%s",
            self.config.listen_address,
            self.config.http_port,
            self.config.listen_address,
            self.config.grpc_port,
        )
        self.health.outbound_ready = True
        self.registry.register(
            Instance(
                app_id=self.app_id,
                http_port=self.config.http_port,
                grpc_port=self.config.grpc_port,
                app_port=self.config.app_port,
                pid=os.getpid(),
            )
        )
        self._startup = asyncio.create_task(self._connect_app())

    async def _connect_app(self) -> None:
        """As daprd's initRuntime: without health checks the app's subscriptions start before
        the sidecar reports ready; with them, at the app's first healthy probe."""
        if self.app_channel is None or self.subscriber is None:
            self._mark_ready()
            return
        await self._wait_for_app(self.app_channel)
        if self.config.app_health is not None:
            # Like daprd: nothing is delivered or invoked until the first probe succeeds.
            self.invoker.app_healthy = False
            self.app_health = AppHealth(
                self.app_channel,
                self.config.app_health,
                partial(self._app_health_changed, self.subscriber),
            )
            self._health_task = asyncio.create_task(self.app_health.run(), name="app-health")
        else:
            await self.subscriber.start()
        self._mark_ready()

    def _app_health_changed(self, subscriber: AppSubscriber, healthy: bool) -> None:
        self.invoker.app_healthy = healthy
        subscriber.health_changed(healthy)

    def _subscriptions_failed(self, exc: Exception) -> None:
        logger.critical("cannot start the subscriptions, the sidecar stops: %s", exc)
        self.exit_code = 1
        self.request_shutdown()

    def _mark_ready(self) -> None:
        self.health.ready = True
        logger.info("dapr initialized. Status: Running. App ID: %s", self.app_id)

    async def _wait_for_app(self, channel: AppChannel) -> None:
        logger.info("waiting for the app to listen on %s:%s", channel.address, channel.port)
        self.health.not_ready_reason = "waiting for the app"
        while True:
            try:
                await channel.wait_ready(_APP_WAIT_LOG_EVERY)
                return
            except TimeoutError:
                logger.info(
                    "still waiting for the app to listen on %s:%s", channel.address, channel.port
                )

    async def block_shutdown(self, seconds: float) -> None:
        """``--dapr-block-shutdown-duration``, after a signal: deliver nothing more but keep
        serving the APIs (the app may still save and publish) until ``seconds`` passed or,
        with health checks, the app reports unhealthy."""
        logger.info(
            "Blocking graceful shutdown for %s or until app reports unhealthy...",
            format_go_duration(seconds),
        )
        self.deliverer.refuse()
        if self.app_health is None:
            await asyncio.sleep(seconds)
        else:
            try:
                async with asyncio.timeout(seconds):
                    await self.app_health.unhealthy.wait()
                logger.info("App reported unhealthy, entering shutdown...")
                return
            except TimeoutError:
                pass
        logger.info("Block shutdown period expired, entering shutdown...")

    async def stop(self) -> None:
        """Graceful shutdown: stop delivering, stop serving, close components.

        As daprd's grace period (``--dapr-graceful-shutdown-seconds``) bounds its closers,
        the waits for deliveries in flight and for components to close share one budget;
        ShutdownTimeout when it runs out.
        """
        budget = self.config.graceful_shutdown_seconds
        deadline = None if budget is None else asyncio.get_running_loop().time() + budget
        self.health.ready = False
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        if self._health_task is not None:
            self._health_task.cancel()
        if self.subscriber is not None:
            await self.subscriber.close()
        await _by(deadline, self.deliverer.close())
        if self.outbox is not None:
            await self.outbox.close()
        for server in reversed(self._servers):
            await server.stop()
        await self.invoker.close()
        if self.app_channel is not None:
            await self.app_channel.close()
        logger.info("Dapr is shutting down")
        await _by(deadline, self.components.close())
        logger.info("Dapr runtime stopped")
        self.registry.unregister()


class ShutdownTimeout(Exception):
    """The graceful shutdown ran out of time (daprd then exits with status 1)."""


async def _by(deadline: float | None, step: Awaitable[None]) -> None:
    """Await a shutdown step, bounded by the shutdown's deadline (None: no limit)."""
    try:
        async with asyncio.timeout_at(deadline):
            await step
    except TimeoutError:
        raise ShutdownTimeout from None


async def serve(config: SidecarConfig, env: Mapping[str, str]) -> int:
    """Run one sidecar until SIGTERM/SIGINT or the Shutdown API; the process exit code."""
    resources = load_resources(
        config.resources_paths,
        TemplateContext(
            app_id=config.app_id,
            namespace=config.current_namespace,
            pod_name=env.get("POD_NAME", ""),
            env=env,
        ),
    )
    if config.config_file:
        logger.warning(
            "--config %s is not applied: this sidecar does not implement Configuration "
            "resources (tracing, middleware, access control)",
            config.config_file,
        )
    if config.graceful_shutdown_seconds is None:
        logger.warning("Graceful shutdown timeout is infinite, will wait indefinitely to shutdown")
    runtime = Runtime(config, env)
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()  #: a signal, not the Shutdown API, asked to stop

    def on_signal() -> None:
        signalled.set()
        runtime.request_shutdown()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        await runtime.start(resources)
        # What start-up built lives as long as the process: exempt it from the collector, whose
        # full passes over it took about 50 ms each under load.
        gc.collect()
        gc.freeze()
        await runtime.stopping.wait()
        if signalled.is_set() and config.block_shutdown_seconds is not None:
            await runtime.block_shutdown(config.block_shutdown_seconds)
        logger.info("shutting down")
    finally:
        try:
            await runtime.stop()
        except ShutdownTimeout:
            # daprd's log.Fatal: out at once, whatever is still in flight or open (undelivered
            # messages stay unacknowledged at the broker and are delivered again).
            logger.critical("Graceful shutdown timeout exceeded, forcing shutdown")
            runtime.registry.unregister()
            logging.shutdown()
            os._exit(1)
    logger.info("Daprd shutdown gracefully")
    return runtime.exit_code

"""FastAPI dependencies: the lifespan's long-lived objects, handed to route handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from microservice_x.orchestrator import OrchestratorClient
from microservice_x.settings import Settings
from microservice_x.store import ViewStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> ViewStore:
    store: ViewStore = request.app.state.store
    return store


def get_orchestrator(request: Request) -> OrchestratorClient:
    orchestrator: OrchestratorClient = request.app.state.orchestrator
    return orchestrator


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ViewStore, Depends(get_store)]
OrchestratorDep = Annotated[OrchestratorClient, Depends(get_orchestrator)]

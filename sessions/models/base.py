from __future__ import annotations

import uuid

from django.db import models


class TimeStampedModel(models.Model):
    """Integer primary key inside the server, a UUID (``uuid``) as the only public id."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

"""Keep the units table in step with the unit directory file."""

from __future__ import annotations

from db.models import Unit
from db.uow import UnitOfWorkFactory
from routing.directory import UnitDirectory


async def sync_units(uow_factory: UnitOfWorkFactory, directory: UnitDirectory) -> tuple[int, int, int]:
    """Insert new units, update changed ones, deactivate those no longer in the file.

    Returns (added, updated, deactivated). Units are never deleted: cases and users refer to them.
    """
    added = updated = deactivated = 0
    async with uow_factory() as uow:
        existing = {u.code: u for u in await uow.units.all()}
        for entry in directory.units:
            row = existing.pop(entry.code, None)
            if row is None:
                uow.session.add(Unit(code=entry.code, name=entry.name, name_en=entry.name_en, type=entry.type))
                added += 1
                continue
            values = {"name": entry.name, "name_en": entry.name_en, "type": entry.type, "active": True}
            if any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                updated += 1
        for row in existing.values():
            if row.active:
                row.active = False
                deactivated += 1
        await uow.commit()
    return added, updated, deactivated

"""Database: models, engine, unit of work, repositories, migrations."""

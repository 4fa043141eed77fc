"""The confluent-kafka publisher lives in `clientela.shared.confluent`; re-exported here."""

from clientela.shared.confluent import ConfluentPublisher, Row, producer_config

__all__ = ["ConfluentPublisher", "Row", "producer_config"]

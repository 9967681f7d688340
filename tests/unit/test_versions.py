"""Versions that must agree: pyspark and the Spark Kafka connector."""

import re
import xml.etree.ElementTree as ET

import pyspark
import pytest

from tests.helpers import ROOT

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_property(pom, name):
    return ET.parse(ROOT / pom).getroot().find(f"m:properties/m:{name}", POM_NS).text


def test_connector_version_equals_pinned_pyspark():
    pinned = re.search(r"pyspark==([\d.]+)", (ROOT / "setup.cfg").read_text()).group(1)

    assert pom_property("infra/spark/pom.xml", "spark.version") == pinned


def test_installed_pyspark_is_the_pinned_one():
    assert pyspark.__version__ == pom_property("infra/spark/pom.xml", "spark.version")


@pytest.mark.slow
def test_fetched_connector_jar_matches_pyspark():
    jars = [path.name for path in (ROOT / "infra" / "spark" / "jars").glob("spark-sql-kafka-0-10_2.13-*.jar")]

    assert jars == [f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar"]

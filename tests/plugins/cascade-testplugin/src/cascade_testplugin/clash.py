"""Claims the ``testing.readings`` table too, when CASCADE_TESTPLUGIN_CLASH=1 (for the clash test)."""

import os

import dlt

from cascade import cascade_ingestion
from cascade_testplugin.assets import READINGS

if os.environ.get("CASCADE_TESTPLUGIN_CLASH") == "1":

    @cascade_ingestion(table_name="readings", unique_key="station", iceberg_schema=READINGS, group="testing")
    def other_readings(partition_date: str):
        return dlt.resource([], name="readings")

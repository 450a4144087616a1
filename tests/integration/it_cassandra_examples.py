#!/usr/bin/env python3
"""it-cassandra_examples: the two Cassandra seed pipelines end to end,
against the CQL v4 test server (tests/cql/cqlserver.py, itself proven with
the DataStax driver) and the recorded data of ../shared/data served over
local HTTP.

- examples/weather-cassandra.yaml: http_source polls "OpenWeatherMap" (a
  local server answering with the recorded rows of the seed) for the twelve
  cities, schema_mapper computes feels_like_delta = temperature -
  feels_like, cassandra_sink creates weather_keyspace.weather_table and
  upserts one row per (city, dt): the table equals the recorded rows.
- examples/velib-cassandra.yaml: the all-stations Vélib' pipeline on the
  2024 snapshot with the real postcode table: velib_keyspace.postcode_bikes
  holds, per postcode, the totals an independent computation gives.

The examples run as shipped except for what points them at the local
servers (URLs, contact point, port), the state dir and the poll interval.
"""
import json
import os
import re

import it_velib_pipeline as velib
import plugin_http_source as weather
from httpfixture import HttpFixture, Response
from plugin_cassandra_sink import CqlServer
from spoketest import SOURCE_DIR, Spoke, main, q

TIMEOUT = 90


def example(name, replace):
    """The example's connectors section, with (old, new) replacements."""
    text = open(os.path.join(SOURCE_DIR, "examples", name)).read()
    body = text[text.index("\nconnectors:") + 1:]
    for old, new in replace:
        assert old in body, "%s: %r not found" % (name, old)
        body = body.replace(old, new)
    return body


def test_weather_cassandra_example():
    rows = weather.load_rows()
    first = {}
    for r in rows:
        first.setdefault(r["city"], r)  # the first recorded poll of each city
    assert len(first) == 12, sorted(first)
    with CqlServer() as cs, HttpFixture() as srv:
        for city, r in first.items():
            srv.route(weather.city_path(city),
                      Response(json.dumps(weather.owm(r)).encode(),
                               content_type="application/json"))
        os.environ["OWM_API_KEY"] = weather.KEY
        os.environ["CASSANDRA_HOSTS"] = "127.0.0.1"
        body = example("weather-cassandra.yaml", [
            ("https://api.openweathermap.org/data/2.5/weather", srv.url(weather.PATH)),
            ("schemas/openweathermap_current.yaml",
             os.path.join(SOURCE_DIR, "schemas", "openweathermap_current.yaml")),
            ("    keyspace: weather_keyspace", "    port: %d\n    keyspace: weather_keyspace" % cs.port),
        ])
        with Spoke(body) as sp:
            sp.wait_for(lambda: cs.count("weather_keyspace.weather_table") == 12, TIMEOUT,
                        "12 rows in weather_keyspace.weather_table")
            d = cs.dump("weather_keyspace.weather_table")
            cols = d["columns"]
            got = {r[cols.index("city")]: dict(zip(cols, r)) for r in d["rows"]}
            assert set(got) == set(first), sorted(got)
            for city, r in first.items():
                g = got[city]
                assert g["dt"] == weather.epoch(r["date"]) * 1000, (g, r)
                assert abs(g["temperature"] - r["temperature"]) < 1e-9, (g, r)
                assert abs(g["feels_like"] - r["feels_like"]) < 1e-9, (g, r)
                assert abs(g["feels_like_delta"] - (r["temperature"] - r["feels_like"])) < 1e-9, g
                assert abs(g["lon"] - r["lon"]) < 1e-9 and abs(g["lat"] - r["lat"]) < 1e-9, g
            assert weather.KEY not in sp.log()


def test_velib_cassandra_example():
    velib.need_data()
    postcode = velib.postcode_table()
    want = velib.expected("2024", postcode)
    with CqlServer() as cs, HttpFixture() as srv:
        velib.serve(srv, "2024")
        os.environ["VELIB_STATUS_URL"] = srv.url("/station_status.json")
        os.environ["VELIB_INFO_URL"] = srv.url("/station_information.json")
        os.environ["VELIB_POSTCODES"] = os.path.join(velib.DATA, velib.POSTCODES)
        os.environ["CASSANDRA_HOSTS"] = "127.0.0.1"
        body = example("velib-cassandra.yaml", [
            ("schemas/velib_station_status.yaml",
             os.path.join(SOURCE_DIR, "schemas", "velib_station_status.yaml")),
            ("    keyspace: velib_keyspace", "    port: %d\n    keyspace: velib_keyspace" % cs.port),
        ])
        table = "velib_keyspace.postcode_bikes"

        def table_ok():
            try:
                d = cs.dump(table)
            except AssertionError:
                return None
            cols = d["columns"]
            got = {r[cols.index("postcode")]: dict(zip(cols, r)) for r in d["rows"]}
            if set(got) != set(want):
                return None
            for pc, w in want.items():
                for c in velib.COLUMNS:
                    if got[pc][c] != w[c]:
                        return None
            return got
        with Spoke(body) as sp:
            got = sp.wait_for(table_ok, TIMEOUT, "postcode_bikes to equal the independent totals")
        assert len(got) == 85 and sum(r["stations"] for r in got.values()) == 1448


if __name__ == "__main__":
    main(globals())

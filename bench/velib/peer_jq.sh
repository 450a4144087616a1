#!/bin/sh
# The same aggregate with jq: latest record per station, totals per postcode.
# usage: peer_jq.sh records.ndjson postcodes.csv
set -eu
jq -n -c --rawfile csv "$2" '
  ($csv | split("\n") | .[1:] | map(select(length > 0) | split(",")) |
   map({key: .[0], value: .[2]}) | from_entries) as $post
  | reduce inputs as $r ({};
      .[$r.stationCode] = {
        postcode: $post[$r.stationCode],
        bikes: $r.num_bikes_available,
        mech: ([$r.num_bikes_available_types[] | .mechanical // empty] | add // 0),
        ebike: ([$r.num_bikes_available_types[] | .ebike // empty] | add // 0)})
  | [.[]] | group_by(.postcode)[]
  | {postcode: .[0].postcode, total_bikes_available: (map(.bikes) | add),
     total_mechanical_bikes: (map(.mech) | add), total_electric_bikes: (map(.ebike) | add)}
' "$1"

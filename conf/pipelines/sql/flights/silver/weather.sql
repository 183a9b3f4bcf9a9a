-- silver.weather: one hourly observation per origin airport. Key: origin, observed_hour_at (UTC).
with source as (
    select * from bronze_batch
),

final as (
    select
        origin,
        date_trunc('hour', time_hour) as observed_hour_at,
        temp as temp_f,
        dewp as dewpoint_f,
        humid as humidity_pct,
        wind_dir as wind_dir_degrees,
        wind_speed as wind_speed_mph,
        wind_gust as wind_gust_mph,
        precip as precip_inches,
        pressure as pressure_mb,
        visib as visibility_miles,
        _source_file,
        _ingested_at,
        _batch_id
    from source
)

select * from final

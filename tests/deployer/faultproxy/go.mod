module deployapps/faultproxy

go 1.26.0
